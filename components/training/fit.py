"""The one training loop: Keras ``fit`` over the folds of a unit, with per-fold epoch selection.

``fit_folds`` trains one model configuration for several folds at once. When the backbone and
attention have a fold-stacked form (and ``train.stack_folds``), the folds share one
:class:`~components.models.stacked.StackedModel`: each step gives every fold its own batch of
its own training samples (:func:`~components.training.data.fold_stream`; padding rows masked out
of the loss and the BatchNorm moments).
Otherwise each fold trains its own ordinary Keras model, one after another (and under
``MirroredStrategy`` when several devices are configured). Either way, every epoch each fold
is scored on its **validation subjects** only (UF1, then lower loss), its best weights are
kept, it stops after ``patience`` epochs without improvement, and its best weights are
restored before its test subjects are predicted. ``evaluate``, ``tune`` trials (through
``on_epoch`` hooks and checkpoints) and ``register`` all train through here.
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
from components.metrics import confusion_matrix, uar, uf1
from components.training.data import StreamOptions, fold_steps, fold_stream, training_stream
from components.training.patch_stats import patch_stats_table


def class_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Balanced weights n / (k · n_c) (classes absent from training get weight 0)."""
    counts = np.bincount(np.asarray(labels, int), minlength=num_classes).astype(float)
    total = counts.sum()
    return np.array(
        [total / (num_classes * counts[c]) if counts[c] else 0.0 for c in range(num_classes)],
        np.float32,
    )


def validation_metrics(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """UF1, UAR and cross-entropy of probabilities ``(n, K)`` against ``truth``."""
    matrix = confusion_matrix(truth, probabilities.argmax(-1), probabilities.shape[-1])
    picked = probabilities[np.arange(len(truth)), truth]
    return {
        "val_uf1": uf1(matrix),
        "val_uar": uar(matrix),
        "val_loss": float(-np.log(np.clip(picked, 1e-7, 1)).mean()),
    }


@dataclass(frozen=True)
class FoldData:
    """One fold of a unit: row positions (into the records) to train on, to choose the epoch
    on, and to predict at the end; ``seed`` initialises this fold's weights."""

    name: str
    train: np.ndarray
    validation: np.ndarray
    predict: np.ndarray
    seed: int


@dataclass
class FoldFit:
    """What training one fold produced."""

    name: str
    best_epoch: int  # 0-based; -1 without validation subjects (the last epoch is kept)
    epochs_run: int
    history: list[dict[str, float]]  # per epoch: val_uf1, val_uar, val_loss
    probabilities: np.ndarray  # (len(predict), K) with the best epoch's weights
    export: Callable[[], keras.Model] = field(repr=False, default=None)  # the fold's Keras model


def stackable(model_cfg: ModelConfig) -> bool:
    """Whether the backbone and the attention both have fold-stacked forms."""
    from components.attention.registry import ATTENTION
    from components.models.registry import BACKBONES

    return bool(
        BACKBONES[model_cfg.backbone].stacked and ATTENTION[model_cfg.attention.type].stacked
    )


def stacks(
    model_cfg: ModelConfig, train_cfg: TrainConfig, strategy: tf.distribute.Strategy
) -> bool:
    """Whether folds of ``model_cfg`` train stacked: a stacked form exists, ``train.stack_folds``
    is on, and there is one replica (masked BatchNorm moments are per replica)."""
    return bool(
        train_cfg.stack_folds and stackable(model_cfg) and strategy.num_replicas_in_sync == 1
    )


class FoldWeights:
    """Per-fold snapshots of a model's state: stacked variables carry the fold axis first; an
    ordinary model is fold 0 of a one-fold stack."""

    def __init__(self, variables: list, stacked: bool):
        self.variables = variables
        self.stacked = stacked
        self.best = [self._read(v).copy() for v in variables]

    def _read(self, variable) -> np.ndarray:
        value = keras.ops.convert_to_numpy(variable)
        return value if self.stacked else value[None]

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
                variable.assign(current if self.stacked else current[0])


class FoldSelection(keras.callbacks.Callback):
    """Each epoch: every fold scored on its own validation samples (``predict()`` returns each
    fold's probabilities for them); best epoch per fold (UF1, then lower loss); a fold stops
    counting after ``patience`` epochs without improvement (never before ``min_epochs``);
    training stops when every fold has; :meth:`restore` brings back the best weights.
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
    ):
        super().__init__()
        self.predict, self.truth = predict, truth
        self.patience, self.min_epochs = patience, min_epochs
        self.weights = weights
        self.on_epoch = on_epoch
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
        if self.stopped.all():
            self.model.stop_training = True

    def restore(self) -> None:
        """Every fold with validation rows back to its best epoch's weights."""
        self.weights.restore(np.array([len(t) > 0 for t in self.truth]))

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


@dataclass
class Trainer:
    """A compiled model for the folds of a unit, and how to feed and read it."""

    model: keras.Model
    stacked: bool
    folds: int
    num_classes: int

    def inputs(self, x: np.ndarray):
        if self.stacked:
            return (x, np.zeros((len(x), self.folds), np.float32))
        return x

    def fold_predictor(
        self, inputs: np.ndarray, positions: list[np.ndarray], chunk: int = 256
    ) -> Callable[[], list[np.ndarray]]:
        """A function returning, for each fold, its probabilities ``(n_f, K)`` for its own
        ``positions`` of ``inputs``. A stacked model gets one batch per fold (row ``r`` holds
        each fold's ``r``-th sample, a fold's samples repeated up to the longest), so each fold
        pays only for its own samples."""
        if self.stacked:
            longest = max((len(p) for p in positions), default=0)
            index = np.stack(
                [np.resize(p, longest) if len(p) else np.zeros(longest, int) for p in positions],
                1,
            )
        else:
            (index,) = positions
        whole = self.predictor(inputs[index], chunk)

        def predict() -> list[np.ndarray]:
            out = whole()  # (rows, F, K)
            return [out[: len(p), f] for f, p in enumerate(positions)]

        return predict

    def predictor(self, x: np.ndarray, chunk: int = 512) -> Callable[[], np.ndarray]:
        """A function returning probabilities ``(len(x), F, K)`` with the current weights."""
        forward = tf.function(lambda batch: self.model(batch, training=False))
        pieces = [self.inputs(x[start : start + chunk]) for start in range(0, len(x), chunk)]

        def predict() -> np.ndarray:
            if not pieces:
                return np.zeros((0, self.folds, self.num_classes), np.float32)
            out = np.concatenate([forward(p).numpy() for p in pieces])
            return out if self.stacked else out[:, None]

        return predict


def build_trainer(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    *,
    run_seed: int,
    input_sizes: dict[str, int],
    num_classes: int,
    strategy: tf.distribute.Strategy,
    steps: int,
) -> Trainer:
    """The model for ``len(seeds)`` folds, compiled: stacked when it can be (one replica, a
    stacked form, ``train.stack_folds``), else one ordinary model (``len(seeds)`` must be 1).
    An ordinary model is drawn from its fold's seed; a stacked one's weights from each fold's
    seed, its dropout seed generator from ``run_seed`` (not from whatever the process drew
    before)."""
    from components.training.runtime import seed_everything

    stacked = stacks(model_cfg, train_cfg, strategy)
    with strategy.scope():
        if stacked:
            from components.imports import load_target
            from components.models.registry import BACKBONES

            seed_everything(run_seed)
            build = load_target(BACKBONES[model_cfg.backbone].stacked)
            model = build(model_cfg, len(seeds), input_sizes, num_classes)
            model.initialise(list(seeds))
        else:
            if len(seeds) != 1:
                raise ValueError("an ordinary model trains one fold at a time")
            from components.models import build_model

            seed_everything(seeds[0])
            model = build_model(model_cfg, num_classes=num_classes, **input_sizes)
        model.compile(
            optimizer=keras.optimizers.Adam(train_cfg.learning_rate),
            loss=None if stacked else "sparse_categorical_crossentropy",
            # one call per epoch (no per-step Python overhead); MirroredStrategy's distributed
            # iterator fails inside Keras' multi-step loop, so several replicas step one by one
            steps_per_execution=steps if strategy.num_replicas_in_sync == 1 else 1,
        )
    return Trainer(model, stacked, len(seeds), num_classes)


def fold_weights(trainer: Trainer) -> FoldWeights:
    model = trainer.model
    variables = model.fold_state() if trainer.stacked else list(model.weights)
    return FoldWeights(variables, trainer.stacked)


class FoldRun:
    """Training of the folds of one unit by one model (stacked) or of one fold by an ordinary
    model: :meth:`fit` trains epochs ``[start, stop)`` (resumable: batches depend only on the
    seed and the epoch), :meth:`state`/:meth:`load` are a checkpoint, :meth:`finish` restores
    each fold's best weights and predicts its test rows."""

    def __init__(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        folds: Sequence[FoldData],
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        *,
        kind: str,
        input_sizes: dict[str, int],
        num_classes: int,
        seed: int,
        strategy: tf.distribute.Strategy,
        early_stopping: bool = True,
        on_epoch: Callable[[int, list[dict], list[np.ndarray]], None] | None = None,
    ):
        self.inputs, self.labels, self.folds = inputs, labels, list(folds)
        self.train_cfg, self.kind, self.seed, self.strategy = train_cfg, kind, seed, strategy
        stacked = stacks(model_cfg, train_cfg, strategy)
        # a stacked model gives each fold its own batches of batch_size (fold_stream); an
        # ordinary model's batch is split over its replicas
        self.batch = train_cfg.batch_size * (1 if stacked else strategy.num_replicas_in_sync)
        self.steps = fold_steps([len(f.train) for f in self.folds], self.batch)
        self.trainer = build_trainer(
            model_cfg,
            train_cfg,
            [f.seed for f in folds],
            run_seed=seed,
            input_sizes=input_sizes,
            num_classes=num_classes,
            strategy=strategy,
            steps=self.steps,
        )
        self.class_weights = [
            class_weights(labels[f.train], num_classes)
            if train_cfg.class_weighting == "balanced"
            else np.ones(num_classes, np.float32)
            for f in folds
        ]
        if self.trainer.stacked:
            self.trainer.model.class_weights.assign(np.stack(self.class_weights))
        self.selection = FoldSelection(
            self.trainer.fold_predictor(inputs, [f.validation for f in folds]),
            [labels[f.validation] for f in folds],
            patience=train_cfg.patience if early_stopping else train_cfg.epochs,
            min_epochs=train_cfg.min_epochs,
            weights=fold_weights(self.trainer),
            on_epoch=on_epoch,
        )
        self.selection.set_model(self.trainer.model)
        self.losses: list[float] = []  # training loss per epoch (the sum over the folds)
        self._record_loss = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.losses.append(float(logs["loss"]))
        )  # before selection: an on_epoch hook's checkpoint has this epoch's loss

    @property
    def on_epoch(self) -> Callable[[int, list[dict], list[np.ndarray]], None] | None:
        """Called at the end of every epoch with its per-fold metrics and probabilities."""
        return self.selection.on_epoch

    @on_epoch.setter
    def on_epoch(self, hook: Callable[[int, list[dict], list[np.ndarray]], None] | None) -> None:
        self.selection.on_epoch = hook

    @property
    def stopped(self) -> bool:
        return bool(self.selection.stopped.all()) or bool(self.trainer.model.stop_training)

    def fit(self, start: int = 0, stop: int | None = None) -> None:
        stop = self.train_cfg.epochs if stop is None else stop
        if start >= stop or self.stopped:
            return
        cfg = self.train_cfg
        options = StreamOptions.training(cfg, self.kind, self.batch, self.seed)
        if self.trainer.stacked:
            table = (
                patch_stats_table(self.inputs, options.kind, options.flip, options.shift_px)
                if self.trainer.model.patch_stats_input
                else None
            )
            folds_train = [f.train for f in self.folds]
            stream = fold_stream(
                self.inputs, self.labels, folds_train, options, range(start, stop), table
            )
        else:
            train = np.unique(self.folds[0].train)
            stream = training_stream(
                self.inputs[train], self.labels[train], options, range(start, stop)
            )
        self.trainer.model.fit(
            stream,
            initial_epoch=start,
            epochs=stop,
            steps_per_epoch=self.steps,
            class_weight=None if self.trainer.stacked else dict(enumerate(self.class_weights[0])),
            callbacks=[self._record_loss, self.selection],
            shuffle=False,
            verbose=0,
        )

    def state(self, next_epoch: int) -> dict[str, Any]:
        model = self.trainer.model
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
        model = self.trainer.model
        missing = {"next_epoch", "variables", "optimizer", "selection", "losses"} - set(state)
        if missing:
            raise ArtifactError(f"a stored training state lacks {', '.join(sorted(missing))}")
        _assign_all(model.variables, state["variables"], "model")
        with self.strategy.scope():
            model.optimizer.build(model.trainable_variables)
        _assign_all(model.optimizer.variables, state["optimizer"], "optimizer")
        self.selection.load_state(state["selection"])
        self.losses = list(state["losses"])
        return int(state["next_epoch"])

    def finish(self) -> list[FoldFit]:
        """Each fold's best weights restored (folds with validation subjects), its test rows
        predicted; returns every fold's outcome."""
        self.selection.restore()
        folds, trainer, selection = self.folds, self.trainer, self.selection
        probabilities = trainer.fold_predictor(self.inputs, [f.predict for f in folds])()
        fits = []
        for index, fold in enumerate(folds):
            export = (
                (lambda f=index: trainer.model.export_fold(f))
                if trainer.stacked
                else (lambda: trainer.model)
            )
            fits.append(
                FoldFit(
                    name=fold.name,
                    best_epoch=int(selection.best_epoch[index]) if len(fold.validation) else -1,
                    epochs_run=int(selection.epochs_run[index]),
                    history=selection.history[index],
                    probabilities=probabilities[index],
                    export=export,
                )
            )
        return fits


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
    **options: Any,
) -> list[FoldRun]:
    """One stacked run for all ``folds`` when the model stacks, else one run per fold."""
    groups = [list(folds)] if stacks(model_cfg, train_cfg, strategy) else [[f] for f in folds]
    return [
        FoldRun(inputs, labels, group, model_cfg, train_cfg, strategy=strategy, **options)
        for group in groups
    ]


def fit_folds(
    inputs: np.ndarray,
    labels: np.ndarray,
    folds: Sequence[FoldData],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    **options: Any,
) -> list[FoldFit]:
    """Train ``model_cfg`` for every fold of ``folds`` (see the module docstring)."""
    fits = []
    for run in fold_runs(inputs, labels, folds, model_cfg, train_cfg, **options):
        run.fit()
        fits += run.finish()
    return fits
