"""Subject-level splits: leave-one-subject-out and grouped k-fold, each with a validation set
drawn from the training subjects only (never from the test subject)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from components.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """One outer fold: disjoint test, training and validation subject sets."""

    name: str
    test: tuple[str, ...]
    train: tuple[str, ...]
    validation: tuple[str, ...]

    def check(self) -> None:
        """Raise if any subject is in two roles."""
        test, train, val = set(self.test), set(self.train), set(self.validation)
        if test & train or test & val or train & val or not test or not train:
            raise AssertionError(f"fold {self.name}: subject sets overlap or are empty")


def validation_split(
    subjects: Sequence[str], fraction: float, seed: int, key: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split training subjects into (train, validation) by subject; at least one of each
    when there are two or more subjects. Seeded by ``seed`` and the fold ``key``."""
    ordered = sorted(subjects)
    if len(ordered) < 2 or fraction <= 0:
        return tuple(ordered), ()
    rng = np.random.default_rng([seed, *key.encode()])
    count = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    chosen = set(rng.choice(ordered, size=count, replace=False).tolist())
    return tuple(s for s in ordered if s not in chosen), tuple(sorted(chosen))


def loso_folds(subjects: Sequence[str], validation_fraction: float, seed: int) -> list[Fold]:
    """Leave-one-subject-out: each subject is the test set of exactly one fold."""
    ordered = sorted(set(subjects))
    folds = []
    for subject in ordered:
        train, validation = validation_split(
            [s for s in ordered if s != subject], validation_fraction, seed, subject
        )
        folds.append(Fold(subject, (subject,), train, validation))
    for fold in folds:
        fold.check()
    return folds


def grouped_kfold(
    subjects: Sequence[str], k: int, validation_fraction: float, seed: int
) -> list[Fold]:
    """k folds over subjects (seeded shuffle, near-equal sizes); each subject tested once."""
    ordered = sorted(set(subjects))
    if not 2 <= k <= len(ordered):
        raise ValueError(f"k={k} folds need 2..{len(ordered)} subjects")
    shuffled = np.random.default_rng(seed).permutation(ordered).tolist()
    folds = []
    for index in range(k):
        test = tuple(sorted(shuffled[index::k]))
        rest = [s for s in ordered if s not in test]
        train, validation = validation_split(rest, validation_fraction, seed, f"fold{index}")
        folds.append(Fold(f"fold{index + 1}of{k}", test, train, validation))
    for fold in folds:
        fold.check()
    return folds


def dataset_of(subject_id: str) -> str:
    """The dataset of a namespaced subject id (``casme2/sub01`` → ``casme2``)."""
    return subject_id.split("/", 1)[0]


def lodo_folds(subjects: Sequence[str], validation_fraction: float, seed: int) -> list[Fold]:
    """Leave-one-dataset-out (MEGC 2018's holdout-database evaluation): each dataset is the
    test set of one fold, trained on the other datasets' subjects (validation subjects drawn
    from those)."""
    ordered = sorted(set(subjects))
    datasets = sorted({dataset_of(s) for s in ordered})
    if len(datasets) < 2:
        raise ConfigError(
            f"evaluate.protocol lodo needs at least 2 datasets; the records hold {datasets}"
        )
    folds = []
    for dataset in datasets:
        test = tuple(s for s in ordered if dataset_of(s) == dataset)
        rest = [s for s in ordered if dataset_of(s) != dataset]
        train, validation = validation_split(rest, validation_fraction, seed, dataset)
        folds.append(Fold(dataset, test, train, validation))
    for fold in folds:
        fold.check()
    return folds


def protocol_folds(
    subjects: Sequence[str], protocol: str, k: int, validation_fraction: float, seed: int
) -> list[Fold]:
    """The outer folds of ``evaluate.protocol``: ``loso``, grouped ``kfold`` with ``k`` folds,
    or ``lodo``."""
    if protocol == "loso":
        return loso_folds(subjects, validation_fraction, seed)
    if protocol == "lodo":
        return lodo_folds(subjects, validation_fraction, seed)
    if not 2 <= k <= len(set(subjects)):
        raise ConfigError(f"evaluate.folds: {k} folds need 2..{len(set(subjects))} subjects")
    return grouped_kfold(subjects, k, validation_fraction, seed)
