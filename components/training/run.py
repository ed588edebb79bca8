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
from components.training.runtime import kernel_limits
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
        self.early_stopping = early_stopping
        self.selection = self._selection(models, on_epoch)
        self._order = [f.name for f in models.folds]
        self._left: list[FoldFit] = []  # folds that left the stack, finished
        self.losses: list[float] = []  # training loss per epoch (the sum over the folds)
        self._record_loss = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.losses.append(float(logs["loss"]))
        )  # before selection: an on_epoch hook's checkpoint has this epoch's loss

    def _selection(self, models: FoldModels, on_epoch) -> FoldSelection:
        cfg = self.train_cfg
        selection = FoldSelection(
            models.fold_predictor([f.validation for f in models.folds]),
            [models.labels[f.validation] for f in models.folds],
            patience=cfg.patience if self.early_stopping else cfg.epochs,
            min_epochs=cfg.min_epochs,
            weights=models.weights(),
            on_epoch=on_epoch,
            leave_after=leave_after(len(models.folds)) if models.stacked else 0,
        )
        selection.set_model(models.model)
        return selection

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
        """Train epochs ``[start, stop)``; in a stack, folds that stopped leave it on the way
        (:meth:`_leave`) so the others train on without carrying them."""
        stop = self.train_cfg.epochs if stop is None else stop
        while start < stop and not self.stopped:
            rate = schedule_callback(self.train_cfg)
            with kernel_limits():
                self._fit_epochs(start, stop, rate)
            start = self.selection.next_epoch
            if not self.selection.folds_leaving or start >= stop:
                return
            self._leave()

    def _fit_epochs(self, start: int, stop: int, rate) -> None:
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

    def _leave(self) -> None:
        """The stopped folds leave the stack, finished (best weights, test predictions); the
        others go on in a smaller stack holding exactly their state (weights, optimizer,
        selection), so what they learn does not change."""
        stopped = self.selection.stopped.copy()
        self._left += self._finished(np.flatnonzero(stopped))
        keep = np.flatnonzero(~stopped)
        state, on_epoch = self.selection.kept(keep), self.selection.on_epoch
        self.models = self.models.keeping(keep)
        self.folds = self.models.folds
        self.selection = self._selection(self.models, on_epoch)
        self.selection.load_state(state)

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
        predicted; returns every fold's outcome, in the order the run was given its folds."""
        fits = [*self._left, *self._finished(np.arange(len(self.folds)))]
        by_name = {fit.name: fit for fit in fits}
        return [by_name[name] for name in self._order]

    def _finished(self, indices: np.ndarray) -> list[FoldFit]:
        """The folds at ``indices`` of the current stack: best weights restored (those with
        validation subjects), test rows predicted."""
        folds, models, selection = self.folds, self.models, self.selection
        chosen = np.isin(np.arange(len(folds)), indices)
        selection.weights.restore(chosen & np.array([len(f.validation) > 0 for f in folds]))
        wanted = [
            f.predict if pick else f.predict[:0] for f, pick in zip(folds, chosen, strict=True)
        ]
        probabilities = models.fold_predictor(wanted)()
        return [
            FoldFit(
                name=folds[index].name,
                best_epoch=int(selection.best_epoch[index]) if len(folds[index].validation) else -1,
                epochs_run=int(selection.epochs_run[index]),
                history=selection.history[index],
                probabilities=probabilities[index],
                export=lambda m=models, f=int(index): _export(m, f),
            )
            for index in indices
        ]


def leave_after(folds: int) -> int:
    """In a stack of ``folds``, the stopped folds leave once a quarter of them (at least one)
    has stopped: each departure costs a new smaller model (built, compiled and traced), so they
    leave in groups."""
    return max(1, -(-folds // 4))


def _export(models: FoldModels, f: int) -> keras.Model:
    """Fold ``f`` of ``models`` as its Keras model predicts (with the test-time flip when on)."""
    from components.models.layers import with_test_flip

    model = models.export(f)
    return with_test_flip(model, models.options.kind) if models.test_flip else model


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
