"""Split integrity on the real MEGC 2019 composite subject list (68 subjects)."""

import pytest

from components.evaluation.splits import grouped_kfold, loso_folds, validation_split
from tests.builders import megc_rows

SUBJECTS = sorted({f"{d}/{s}" for d in ("casme2", "samm", "smic") for s, _, _ in megc_rows(d)})


def test_the_composite_has_68_namespaced_subjects() -> None:
    assert len(SUBJECTS) == 68
    assert "samm/6" in SUBJECTS and "smic/s01" in SUBJECTS and "casme2/sub01" in SUBJECTS


def test_loso_tests_every_subject_once_and_never_trains_on_it() -> None:
    folds = loso_folds(SUBJECTS, 0.2, seed=1)
    assert len(folds) == 68
    assert sorted(s for f in folds for s in f.test) == SUBJECTS
    for fold in folds:
        test, train, validation = set(fold.test), set(fold.train), set(fold.validation)
        assert len(test) == 1
        assert not test & train and not test & validation and not train & validation
        assert train | validation | test == set(SUBJECTS)
        assert len(validation) == round(0.2 * 67)


def test_grouped_kfold_partitions_subjects() -> None:
    folds = grouped_kfold(SUBJECTS, 5, 0.2, seed=3)
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == SUBJECTS  # each subject tested exactly once
    assert {len(f.test) for f in folds} <= {13, 14}
    for fold in folds:
        assert not set(fold.test) & (set(fold.train) | set(fold.validation))
        assert not set(fold.train) & set(fold.validation)


def test_splits_are_seeded() -> None:
    assert loso_folds(SUBJECTS, 0.2, 7) == loso_folds(SUBJECTS, 0.2, 7)
    assert loso_folds(SUBJECTS, 0.2, 7) != loso_folds(SUBJECTS, 0.2, 8)
    assert grouped_kfold(SUBJECTS, 4, 0.2, 7) == grouped_kfold(SUBJECTS, 4, 0.2, 7)


def test_validation_split_edge_cases() -> None:
    assert validation_split(["a"], 0.5, 0, "k") == (("a",), ())
    assert validation_split(["a", "b"], 0.9, 0, "k")[1] != ()  # always one left to train
    assert len(validation_split(["a", "b"], 0.9, 0, "k")[0]) == 1
    with pytest.raises(ValueError, match="folds need"):
        grouped_kfold(["a", "b"], 3, 0.2, 0)
