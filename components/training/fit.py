"""Train one model: class weights, validation-UF1 early stopping with best-epoch restore."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from components.config import ModelConfig, TrainConfig
from components.evaluation.metrics import confusion_matrix, uar, uf1
from components.models import build_model


def class_weights(labels: Sequence[int], num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k · n_c) (classes absent from training get weight 0)."""
    counts = np.bincount(np.asarray(labels, int), minlength=num_classes).astype(float)
    total = counts.sum()
    return {
        c: (total / (num_classes * counts[c]) if counts[c] else 0.0) for c in range(num_classes)
    }


@dataclass
class Predictions:
    """Labels, predictions and probabilities over a dataset (uids when it carries them)."""

    truth: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    uids: list[str]


def predict_labels(model: keras.Model, dataset: tf.data.Dataset) -> Predictions:
    """Predict a finite dataset of ``(x, y)`` or ``(x, y, uid)`` batches."""
    truths, probabilities, uids = [], [], []
    for batch in dataset:
        probabilities.append(model(batch[0], training=False).numpy())
        truths.append(batch[1].numpy())
        if len(batch) > 2:
            uids.extend(u.decode() for u in batch[2].numpy())
    if not truths:
        empty = np.zeros(0, int)
        return Predictions(empty, empty, np.zeros((0, model.output_shape[-1])), [])
    p = np.concatenate(probabilities)
    return Predictions(np.concatenate(truths).astype(int), p.argmax(-1), p, uids)


def validation_metrics(out: Predictions, num_classes: int) -> dict[str, float]:
    """UF1, UAR and cross-entropy of predictions on validation subjects."""
    matrix = confusion_matrix(out.truth, out.predicted, num_classes)
    picked = out.probabilities[np.arange(len(out.truth)), out.truth]
    return {
        "val_uf1": uf1(matrix),
        "val_uar": uar(matrix),
        "val_loss": float(-np.log(np.clip(picked, 1e-7, 1)).mean()),
    }


def compiled_model(
    model_cfg: ModelConfig, learning_rate: float, input_sizes: dict[str, int], num_classes: int = 3
) -> keras.Model:
    """The model of ``model_cfg``, compiled for training (call inside a strategy scope)."""
    model = build_model(model_cfg, num_classes=num_classes, **input_sizes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class BestValidationUF1(keras.callbacks.Callback):
    """Each epoch: UF1/UAR on the validation subjects (``val_uf1``/``val_uar`` in the logs).
    Keeps the weights of the best epoch (UF1, then lower validation loss), stops after
    ``patience`` epochs without improvement (never before ``min_epochs``), restores the best."""

    def __init__(
        self, validation: tf.data.Dataset, num_classes: int, patience: int, min_epochs: int
    ):
        super().__init__()
        self.validation = validation
        self.num_classes = num_classes
        self.patience = patience
        self.min_epochs = min_epochs
        self.best: tuple[float, float] | None = None
        self.best_epoch = -1
        self.best_weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        logs.update(
            validation_metrics(predict_labels(self.model, self.validation), self.num_classes)
        )
        score = (logs["val_uf1"], -logs["val_loss"])
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, epoch
            self.best_weights = self.model.get_weights()
        elif epoch + 1 >= self.min_epochs and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int  # 0-based; -1 without validation subjects (last epoch kept)
    epochs_run: int
    extra: dict = field(default_factory=dict)


def train_model(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    train_labels: Sequence[int],
    *,
    strategy: tf.distribute.Strategy,
    input_sizes: dict[str, int],
    num_classes: int = 3,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Build ``model_cfg`` inside ``strategy`` and fit it; early stopping and epoch selection
    look only at ``validation_data`` (training subjects held out), never at a test subject."""
    with strategy.scope():
        model = compiled_model(model_cfg, train_cfg.learning_rate, input_sizes, num_classes)
    selector = None
    all_callbacks = list(callbacks)
    if validation_data is not None:
        selector = BestValidationUF1(
            validation_data, num_classes, train_cfg.patience, train_cfg.min_epochs
        )
        all_callbacks.insert(0, selector)
    weights = (
        class_weights(train_labels, num_classes)
        if train_cfg.class_weighting == "balanced"
        else None
    )
    history = model.fit(
        train_data,
        epochs=train_cfg.epochs,
        class_weight=weights,
        callbacks=all_callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=0,
    )
    return TrainResult(
        model=model,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        best_epoch=selector.best_epoch if selector else -1,
        epochs_run=len(history.epoch),
    )
