"""Epoch selection on each fold's validation subjects: the metrics, the per-fold best-weight
snapshots, and the Keras callback that scores every fold after every epoch and stops when all
have stopped improving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from components.metrics import confusion_matrix, uar, uf1


def validation_metrics(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """UF1, UAR and cross-entropy of probabilities ``(n, K)`` against ``truth``."""
    matrix = confusion_matrix(truth, probabilities.argmax(-1), probabilities.shape[-1])
    picked = probabilities[np.arange(len(truth)), truth]
    return {
        "val_uf1": uf1(matrix),
        "val_uar": uar(matrix),
        "val_loss": float(-np.log(np.clip(picked, 1e-7, 1)).mean()),
    }


class FoldWeights:
    """Per-fold snapshots of a model's state: stacked variables carry the fold axis first; an
    ordinary model is fold 0 of a one-fold stack."""

    def __init__(self, variables: list, fold_axis: bool):
        self.variables = variables
        self.fold_axis = fold_axis  # the variables hold every fold (axis 0), or one fold
        self.best = [self._read(v).copy() for v in variables]

    def _read(self, variable) -> np.ndarray:
        value = keras.ops.convert_to_numpy(variable)
        return value if self.fold_axis else value[None]

    def keep(self, folds: np.ndarray) -> None:
        """Remember the current weights of the folds marked in ``folds`` (bool (F,))."""
        if folds.any():
            for index, variable in enumerate(self.variables):
                self.best[index][folds] = self._read(variable)[folds]

    def restore(self, folds: np.ndarray) -> None:
        if folds.any():
            for index, variable in enumerate(self.variables):
                current = self._read(variable)
                current[folds] = self.best[index][folds]
                variable.assign(current if self.fold_axis else current[0])


class FoldSelection(keras.callbacks.Callback):
    """Each epoch: every fold scored on its own validation samples (``predict()`` returns each
    fold's probabilities for them); best epoch per fold (UF1, then lower loss); a fold stops
    counting after ``patience`` epochs without improvement (never before ``min_epochs``);
    training stops when every fold has; ``weights.restore`` brings back the best weights.
    ``on_epoch(epoch, per-fold metrics, per-fold probabilities)`` sees every epoch."""

    def __init__(
        self,
        predict: Callable[[], list[np.ndarray]],
        truth: list[np.ndarray],
        *,
        patience: int,
        min_epochs: int,
        weights: FoldWeights,
        on_epoch: Callable[[int, list[dict], list[np.ndarray]], None] | None = None,
        leave_after: int = 0,
    ):
        super().__init__()
        self.predict, self.truth = predict, truth
        self.patience, self.min_epochs = patience, min_epochs
        self.weights = weights
        self.on_epoch = on_epoch
        #: stop training (to let the stopped folds leave) once this many folds have stopped
        #: while others train on (0: never)
        self.leave_after = leave_after
        self.next_epoch = 0  # the epoch after the last one scored
        folds = len(truth)
        self.best: list[tuple[float, float] | None] = [None] * folds
        self.best_epoch = np.full(folds, -1)
        self.stopped = np.zeros(folds, bool)
        self.epochs_run = np.zeros(folds, int)
        self.history: list[list[dict]] = [[] for _ in range(folds)]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = self.predict()  # per fold: (n_f, K)
        self.last = probabilities
        improved = np.zeros(len(self.truth), bool)
        metrics = []
        for f, truth in enumerate(self.truth):
            if self.stopped[f]:
                metrics.append(self.history[f][-1] if self.history[f] else {})
                continue
            self.epochs_run[f] = epoch + 1
            if not len(truth):
                metrics.append({})
                continue
            values = validation_metrics(truth, probabilities[f])
            self.history[f].append({"epoch": epoch, **values})
            metrics.append(values)
            score = (values["val_uf1"], -values["val_loss"])
            if self.best[f] is None or score > self.best[f]:
                self.best[f], self.best_epoch[f], improved[f] = score, epoch, True
            elif epoch + 1 >= self.min_epochs and epoch - self.best_epoch[f] >= self.patience:
                self.stopped[f] = True
        self.weights.keep(improved)
        if logs is not None and len(self.truth) == 1 and metrics[0]:
            logs.update(metrics[0])
        if self.on_epoch:
            self.on_epoch(epoch, metrics, probabilities)
        self.next_epoch = epoch + 1
        if self.stopped.all() or self.folds_leaving:
            self.model.stop_training = True

    @property
    def folds_leaving(self) -> bool:
        """Enough folds have stopped, and some still train, for the stopped ones to leave."""
        stopped = int(self.stopped.sum())
        return bool(self.leave_after) and self.leave_after <= stopped < len(self.stopped)

    def kept(self, keep: np.ndarray) -> dict[str, Any]:
        """:meth:`state` of the folds at ``keep`` only (for a smaller stack going on)."""
        state = self.state()
        return {
            "best": [state["best"][k] for k in keep],
            "best_epoch": [state["best_epoch"][k] for k in keep],
            "stopped": [state["stopped"][k] for k in keep],
            "epochs_run": [state["epochs_run"][k] for k in keep],
            "history": [state["history"][k] for k in keep],
            "best_weights": [b[keep] for b in state["best_weights"]],
        }

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs to resume selection exactly."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch.tolist(),
            "stopped": self.stopped.tolist(),
            "epochs_run": self.epochs_run.tolist(),
            "history": self.history,
            "best_weights": self.weights.best,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.best = [tuple(b) if b is not None else None for b in state["best"]]
        self.best_epoch = np.array(state["best_epoch"])
        self.stopped = np.array(state["stopped"], bool)
        self.epochs_run = np.array(state["epochs_run"])
        self.history = state["history"]
        self.weights.best = [np.array(b) for b in state["best_weights"]]
