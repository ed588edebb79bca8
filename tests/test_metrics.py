"""MEGC metrics: hand-computed cases and agreement with scikit-learn on pooled predictions."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from components.metrics import confusion_matrix, per_class, summarise, uar, uf1

CLASSES = ("negative", "positive", "surprise")


def test_hand_computed_case() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 2]
    matrix = confusion_matrix(truth, predicted, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # F1_c = 2TP / (2TP + FP + FN): 4/5, 2/4, 2/3
    np.testing.assert_allclose(per_class(matrix)["f1"], [0.8, 0.5, 2 / 3])
    assert uf1(matrix) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # recall_c = TP / N_c: 2/3, 1/2, 1/1
    assert uar(matrix) == pytest.approx((2 / 3 + 0.5 + 1) / 3)


def test_perfect_and_constant_predictions() -> None:
    truth = [0, 1, 2, 2]
    assert uf1(confusion_matrix(truth, truth, 3)) == 1.0
    always_negative = confusion_matrix(truth, [0, 0, 0, 0], 3)
    assert uar(always_negative) == pytest.approx(1 / 3)
    assert uf1(always_negative) == pytest.approx((2 / 5 + 0 + 0) / 3)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=442, p=[250 / 442, 109 / 442, 83 / 442])  # composite balance
    predicted = np.where(rng.uniform(size=442) < 0.6, truth, rng.integers(0, 3, size=442))
    matrix = confusion_matrix(truth, predicted, 3)
    assert uf1(matrix) == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert uar(matrix) == pytest.approx(recall_score(truth, predicted, average="macro"))


def test_summary_reports_composite_and_each_dataset() -> None:
    truth = np.array([0, 1, 2, 0, 1, 0, 0])
    predicted = np.array([0, 1, 1, 0, 0, 0, 1])
    groups = np.array(["casme2", "casme2", "casme2", "samm", "samm", "smic", "smic"])
    summary = summarise(truth, predicted, groups, CLASSES)
    assert set(summary) == {"composite", "casme2", "samm", "smic"}
    assert summary["composite"]["uf1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    for name in ("casme2", "samm"):
        mask = groups == name
        labels = sorted(set(truth[mask]) | set(predicted[mask]))
        assert summary[name]["uf1"] == pytest.approx(
            f1_score(truth[mask], predicted[mask], labels=labels, average="macro")
        )
        assert summary[name]["samples"] == mask.sum()
    # smic subset: only negatives, one predicted positive -> surprise undefined, left out
    assert summary["smic"]["f1_per_class"]["surprise"] is None
    assert summary["smic"]["uar"] == pytest.approx(0.5)
    assert summary["samm"]["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
