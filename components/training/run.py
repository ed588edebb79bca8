"""The one training loop: Keras ``fit`` over a group of folds, with per-fold epoch selection.

A :class:`FoldRun` trains the folds that one :class:`~components.training.fold_models.FoldModels`
holds (a stack of folds, or one fold's ordinary model: it does not need to know which). Every
epoch each fold is scored on its **validation subjects** only (UF1, then lower loss), its best
weights are kept, it stops counting after ``patience`` epochs without improvement, and its best
weights are restored before its test subjects are predicted. ``evaluate`` units, ``tune`` trials
(through ``on_epoch`` hooks and checkpoints) and ``register``'s final model all train through
here, set up by :mod:`components.training.job`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from components.config import ModelConfig, TrainConfig
from components.errors import ArtifactError
from components.training.fold_models import FoldData, FoldModels, fold_models
from components.training.learning_rate import schedule_callback
from components.training.selection import FoldSelection


@dataclass
class FoldFit:
    """What training one fold produced."""

    name: str
    best_epoch: int  # 0-based; -1 without validation subjects (the last epoch is kept)
    epochs_run: int
    history: list[dict[str, float]]  # per epoch: val_uf1, val_uar, val_loss
    probabilities: np.ndarray  # (len(predict), K) with the best epoch's weights
    export: Callable[[], keras.Model] = field(repr=False, default=None)  # the fold's Keras model


class FoldRun:
    """The training of one group of folds: :meth:`fit` trains epochs ``[start, stop)``
    (resumable: batches depend only on each fold's key and the epoch), :meth:`state` /
    :meth:`load` are a checkpoint, :meth:`finish` restores each fold's best weights and
    predicts its test rows."""

    def __init__(
        self,
        models: FoldModels,
        train_cfg: TrainConfig,
        *,
        early_stopping: bool = True,
        on_epoch: Callable[[int, list[dict], list[np.ndarray]], None] | None = None,
    ):
        self.models, self.train_cfg = models, train_cfg
        self.folds = models.folds
        labels = models.labels
        self.selection = FoldSelection(
            models.fold_predictor([f.validation for f in self.folds]),
            [labels[f.validation] for f in self.folds],
            patience=train_cfg.patience if early_stopping else train_cfg.epochs,
            min_epochs=train_cfg.min_epochs,
            weights=models.weights(),
            on_epoch=on_epoch,
        )
        self.selection.set_model(models.model)
        self.losses: list[float] = []  # training loss per epoch (the sum over the folds)
        self._record_loss = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.losses.append(float(logs["loss"]))
        )  # before selection: an on_epoch hook's checkpoint has this epoch's loss

    @property
    def stacked(self) -> bool:
        return self.models.stacked

    @property
    def on_epoch(self) -> Callable[[int, list[dict], list[np.ndarray]], None] | None:
        """Called at the end of every epoch with its per-fold metrics and probabilities."""
        return self.selection.on_epoch

    @on_epoch.setter
    def on_epoch(self, hook: Callable[[int, list[dict], list[np.ndarray]], None] | None) -> None:
        self.selection.on_epoch = hook

    @property
    def stopped(self) -> bool:
        return bool(self.selection.stopped.all()) or bool(self.models.model.stop_training)

    def fit(self, start: int = 0, stop: int | None = None) -> None:
        stop = self.train_cfg.epochs if stop is None else stop
        if start >= stop or self.stopped:
            return
        rate = schedule_callback(self.train_cfg)
        self.models.model.fit(
            self.models.stream(range(start, stop)),
            initial_epoch=start,
            epochs=stop,
            steps_per_epoch=self.models.steps,
            callbacks=[*([rate] if rate else []), self._record_loss, self.selection],
            shuffle=False,
            verbose=0,
            **self.models.fit_arguments(),
        )

    def state(self, next_epoch: int) -> dict[str, Any]:
        model = self.models.model
        return {
            "next_epoch": next_epoch,
            # every variable: the weights and the dropout seed generators' states (not in
            # get_weights), so a resumed run draws the same dropout masks
            "variables": [keras.ops.convert_to_numpy(v) for v in model.variables],
            "optimizer": [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables],
            "selection": self.selection.state(),
            "losses": list(self.losses),
        }

    def load(self, state: dict[str, Any]) -> int:
        """Resume from :meth:`state`; returns the next epoch to train."""
        model = self.models.model
        missing = {"next_epoch", "variables", "optimizer", "selection", "losses"} - set(state)
        if missing:
            raise ArtifactError(f"a stored training state lacks {', '.join(sorted(missing))}")
        _assign_all(model.variables, state["variables"], "model")
        strategy = model.distribute_strategy
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        _assign_all(model.optimizer.variables, state["optimizer"], "optimizer")
        self.selection.load_state(state["selection"])
        self.losses = list(state["losses"])
        return int(state["next_epoch"])

    def finish(self) -> list[FoldFit]:
        """Each fold's best weights restored (folds with validation subjects), its test rows
        predicted; returns every fold's outcome."""
        self.selection.restore()
        folds, models, selection = self.folds, self.models, self.selection
        probabilities = models.fold_predictor([f.predict for f in folds])()
        return [
            FoldFit(
                name=fold.name,
                best_epoch=int(selection.best_epoch[index]) if len(fold.validation) else -1,
                epochs_run=int(selection.epochs_run[index]),
                history=selection.history[index],
                probabilities=probabilities[index],
                export=lambda f=index: self.export(f),
            )
            for index, fold in enumerate(folds)
        ]

    def export(self, f: int) -> keras.Model:
        """Fold ``f``'s Keras model as it predicts (with the test-time flip when on)."""
        from components.models.layers import with_test_flip

        model = self.models.export(f)
        return with_test_flip(model, self.models.options.kind) if self.models.test_flip else model


def _assign_all(variables: Sequence, values: Sequence, what: str) -> None:
    """Assign stored ``values`` to ``variables``, after checking they are arrays of the same
    number, shapes and kinds (a stored state of another model is refused, not half-loaded)."""
    if len(values) != len(variables):
        raise ArtifactError(
            f"a stored training state has {len(values)} {what} variables, this model "
            f"{len(variables)}: it belongs to another configuration"
        )
    for variable, value in zip(variables, values, strict=True):
        value = np.asarray(value)
        if tuple(value.shape) != tuple(variable.shape) or value.dtype.kind not in "fiub":
            raise ArtifactError(
                f"a stored training state gives {what} variable {variable.path} shape "
                f"{value.shape} ({value.dtype}), the model {tuple(variable.shape)}"
            )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def fold_runs(
    inputs: np.ndarray,
    labels: np.ndarray,
    folds: Sequence[FoldData],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    strategy: tf.distribute.Strategy,
    early_stopping: bool = True,
    on_epoch: Callable | None = None,
    **options: Any,
) -> list[FoldRun]:
    """One run for all ``folds`` when they stack, else one run per fold."""
    groups = fold_models(inputs, labels, folds, model_cfg, train_cfg, strategy=strategy, **options)
    return [
        FoldRun(models, train_cfg, early_stopping=early_stopping, on_epoch=on_epoch)
        for models in groups
    ]
