"""Each fold's batch schedule, planned ahead from its own facts only.

A fold's epoch is a permutation of its training samples drawn from (its key, the epoch), split as
evenly as possible over ``ceil(n / batch)`` steps, and each sample's augmentation is drawn from
the same key: nothing depends on the unit the fold is trained in, its position there, or the
other folds' sizes. A fold trained alone (an ordinary Keras model) and the same fold trained in
a stack of folds (:mod:`components.models.stacked`) therefore see the same batches; in a stack,
a fold with fewer steps than the largest idles (its rows masked, its optimizer step skipped)
for the steps it does not have.

A fold's key is drawn from the run's seed and the fold's name; it also seeds the fold's initial
weights (:func:`fold_seed`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from components.features.augment import draw_augmentation


def fold_seed(seed: int, fold: str) -> int:
    """The key of one fold (its initial weights, batch order and augmentation): from the run's
    seed and the fold's name only, so a fold trains the same whichever unit it is in."""
    return zlib.crc32(f"{seed}/{fold}".encode()) & 0x7FFFFFFF


def steps_per_epoch(samples: int, batch: int) -> int:
    return -(-samples // batch)


def balanced_shares(groups: np.ndarray) -> np.ndarray:
    """Each training sample's share of a dataset-balanced epoch: a dataset of ``n_g`` samples
    contributes as many draws as the largest (``max n / n_g`` per sample)."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return (counts.max() / counts)[inverse]


def balanced_draw(train: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One dataset-balanced epoch's samples: every sample of every dataset once, and a smaller
    dataset topped up to the largest's size with samples drawn from it without replacement
    (cycling through it again when it is less than half the largest)."""
    parts = []
    names, counts = np.unique(groups, return_counts=True)
    target = counts.max()
    for name in names:
        mine = train[groups == name]
        extra = target - len(mine)
        rounds = [rng.permutation(mine) for _ in range(-(-extra // len(mine)))]
        parts += [mine, np.concatenate(rounds)[:extra] if rounds else mine[:0]]
    return np.concatenate(parts)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch of one fold: per step, the rows' sample positions (``index``), whether a row is
    real (``mask``; the last rows of a step may be padding), and their augmentation draws."""

    index: np.ndarray  # (steps, rows) int64
    mask: np.ndarray  # (steps, rows) float32
    mirror: np.ndarray  # (steps, rows) bool
    offsets: np.ndarray  # (steps, rows, 2) int32
    #: mixup: each row is mixed with row ``partner`` of its step (itself: unmixed) with weight
    #: ``lam`` on its own sample and label
    partner: np.ndarray  # (steps, rows) int32
    lam: np.ndarray  # (steps, rows) float32

    @property
    def steps(self) -> int:
        return self.index.shape[0]


def fold_epoch(
    train: np.ndarray,
    batch: int,
    key: int,
    epoch: int,
    flip: bool,
    shift_px: int,
    mixup_alpha: float = 0.0,
    groups: np.ndarray | None = None,
) -> EpochPlan:
    """Fold ``key``'s batches of ``epoch`` over its ``train`` positions: each sample once, in
    ``ceil(n / batch)`` steps whose sizes differ by at most one. With ``groups`` (each training
    sample's dataset), the epoch is dataset-balanced instead (:func:`balanced_draw`, its top-up
    drawn from the same key). With ``mixup_alpha`` > 0, each row's mixup partner (a permutation
    of its step's rows) and weight λ ~ Beta(α, α) are drawn from the same key (Zhang et al.
    2018)."""
    train = np.asarray(train, np.int64)
    if groups is not None and len(train):
        train = balanced_draw(train, np.asarray(groups), np.random.default_rng([key, epoch, 3]))
    count = len(train)
    steps = steps_per_epoch(count, batch)
    rows = -(-count // steps) if steps else 0
    order = np.random.default_rng([key, epoch]).permutation(train)
    mirror_all, offsets_all = draw_augmentation(
        np.random.default_rng([key, epoch, 1]), count, flip, shift_px
    )
    index = np.zeros((steps, rows), np.int64)
    mask = np.zeros((steps, rows), np.float32)
    mirror = np.zeros((steps, rows), bool)
    offsets = np.zeros((steps, rows, 2), np.int32)
    partner = np.tile(np.arange(rows, dtype=np.int32), (steps, 1))
    lam = np.ones((steps, rows), np.float32)
    mixing = np.random.default_rng([key, epoch, 2]) if mixup_alpha > 0 else None
    bounds = (np.arange(steps + 1) * count) // max(steps, 1)
    for step in range(steps):
        part = slice(bounds[step], bounds[step + 1])
        size = part.stop - part.start
        index[step, :size], index[step, size:] = order[part], order[part][:1]
        mask[step, :size] = 1.0
        mirror[step, :size], offsets[step, :size] = mirror_all[part], offsets_all[part]
        if mixing is not None:
            partner[step, :size] = mixing.permutation(size)
            lam[step, :size] = mixing.beta(mixup_alpha, mixup_alpha, size)
    return EpochPlan(index, mask, mirror, offsets, partner, lam)


def unit_epoch(plans: Sequence[EpochPlan]) -> EpochPlan:
    """The epochs of several folds stacked: ``(steps, rows, F)`` arrays with as many steps as
    the longest fold (a shorter fold idles, masked, for the rest) and as many rows as the
    largest step."""
    steps = max((p.steps for p in plans), default=0)
    rows = max((p.index.shape[1] for p in plans), default=0)
    folds = len(plans)
    index = np.zeros((steps, rows, folds), np.int64)
    mask = np.zeros((steps, rows, folds), np.float32)
    mirror = np.zeros((steps, rows, folds), bool)
    offsets = np.zeros((steps, rows, folds, 2), np.int32)
    partner = np.tile(np.arange(rows, dtype=np.int32)[:, None], (steps, 1, folds))
    lam = np.ones((steps, rows, folds), np.float32)
    for f, plan in enumerate(plans):
        s, r = plan.index.shape
        index[:s, :r, f], mask[:s, :r, f] = plan.index, plan.mask
        mirror[:s, :r, f], offsets[:s, :r, f] = plan.mirror, plan.offsets
        partner[:s, :r, f], lam[:s, :r, f] = plan.partner, plan.lam
        index[s:, :, f] = plan.index[0, 0] if s else 0  # idle steps: masked, any real sample
    return EpochPlan(index, mask, mirror, offsets, partner, lam)
