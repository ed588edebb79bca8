"""MEGC 2019 metrics from predictions pooled over all folds.

UF1 = mean over classes of F1_c, F1_c = 2TP_c / (2TP_c + FP_c + FN_c);
UAR = mean over classes of TP_c / N_c (N_c = true samples of class c).
A class with no true and no predicted samples in a subset has an undefined F1 and recall; it
is left out of the mean (MEGC reports per dataset only over classes the dataset has).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts[c_true, c_pred]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """TP, FP, FN, N, F1 and recall per class (NaN where undefined)."""
    tp = np.diag(matrix).astype(float)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    n = matrix.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        recall = np.where(n > 0, tp / n, np.nan)
    return {"tp": tp, "fp": fp, "fn": fn, "n": n, "f1": f1, "recall": recall}


def uf1(matrix: np.ndarray) -> float:
    """Unweighted F1: the mean of the defined per-class F1 scores."""
    return float(np.nanmean(per_class(matrix)["f1"]))


def uar(matrix: np.ndarray) -> float:
    """Unweighted average recall over classes that have true samples."""
    return float(np.nanmean(per_class(matrix)["recall"]))


def summarise(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    groups: Sequence[str],
    class_names: Sequence[str],
) -> dict:
    """UF1, UAR, accuracy, per-class F1 and confusion matrix for the whole set ("composite")
    and for each group (dataset) subset."""
    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    k = len(class_names)

    def block(mask: np.ndarray) -> dict:
        matrix = confusion_matrix(y_true[mask], y_pred[mask], k)
        stats = per_class(matrix)
        return {
            "uf1": uf1(matrix),
            "uar": uar(matrix),
            "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "samples": int(mask.sum()),
            "f1_per_class": {c: _number(stats["f1"][i]) for i, c in enumerate(class_names)},
            "confusion_matrix": matrix.tolist(),
        }

    result = {"composite": block(np.ones(len(y_true), bool))}
    for group in sorted(set(groups.tolist())):
        result[group] = block(groups == group)
    return result


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
