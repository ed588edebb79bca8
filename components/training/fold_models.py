"""How the folds of a run are trained: one interface, two implementations.

:class:`OrdinaryFolds` trains one fold as the ordinary Keras model of its configuration (under
``MirroredStrategy`` when several devices are configured); :class:`StackedFolds` trains several
folds as one fold-stacked model (:mod:`components.models.stacked`: every op F folds wide), which
uses a CPU far better for MER's tiny networks. Both give a fold

- the same initial weights: the ordinary model built from the fold's seed;
- the same batches: the fold's own planned schedule (:mod:`components.training.schedule`);
- the same loss: class-weighted cross-entropy over the fold's rows of the step;
- the same optimizer arithmetic: Adam (AdamW with ``train.weight_decay``) with the fold's own
  step count (:class:`FoldAdam`; a stacked fold idle in a step is not updated at all) and the
  same learning rate each epoch (:mod:`components.training.learning_rate`),

so what a fold learns does not depend on which implementation, or which unit, trains it (up to
float rounding; dropout masks are drawn differently). Whether folds stack is decided by
:func:`stacking`, which also says why not when they cannot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from components.config import ModelConfig, TrainConfig
from components.models.patch_stats import patch_stats_table
from components.training.data import StreamOptions, fold_stream, training_stream
from components.training.selection import FoldWeights


@dataclass(frozen=True)
class FoldData:
    """One fold of a run: row positions (into the records) to train on, to choose the epoch
    on, and to predict at the end; ``seed`` is the fold's key (its initial weights, batch order
    and augmentation: :func:`~components.training.schedule.fold_seed`)."""

    name: str
    train: np.ndarray
    validation: np.ndarray
    predict: np.ndarray
    seed: int


def class_weights(
    labels: Sequence[int], num_classes: int, shares: np.ndarray | None = None
) -> np.ndarray:
    """Balanced weights n / (k · n_c) (classes absent from training get weight 0); with
    ``shares`` (each sample's expected draws per epoch), over the counts an epoch draws."""
    counts = np.bincount(np.asarray(labels, int), weights=shares, minlength=num_classes)
    total = counts.sum()
    return np.array(
        [total / (num_classes * counts[c]) if counts[c] else 0.0 for c in range(num_classes)],
        np.float32,
    )


def balanced(train_cfg: TrainConfig) -> bool:
    return train_cfg.class_weighting == "balanced"


def stacking(
    model_cfg: ModelConfig, train_cfg: TrainConfig, strategy: tf.distribute.Strategy
) -> tuple[bool, str]:
    """Whether folds of ``model_cfg`` train stacked, and if not, why: the backbone needs a
    fold-stacked form (every attention type has one), ``train.stack_folds`` must be on, and
    there must be one replica (masked BatchNorm moments are per replica)."""
    from components.models.registry import unstacked_because

    reason = unstacked_because(model_cfg.backbone, train_cfg.stack_folds)
    if reason:
        return False, reason
    if strategy.num_replicas_in_sync != 1:
        return False, f"{strategy.num_replicas_in_sync} replicas (MirroredStrategy)"
    return True, ""


def ordinary_loss(label_smoothing: float, soft: bool = False) -> str | keras.losses.Loss:
    """The ordinary model's loss: Keras' cross-entropy on class indices, or on one-hot or soft
    (mixup) targets smoothed by ``label_smoothing``."""
    if not soft:
        return "sparse_categorical_crossentropy"
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def _identity(variable) -> int:
    """One key for a model variable whether given as Keras' variable or as the backend's (the
    optimizer's update step receives the latter)."""
    return id(variable.value if isinstance(variable, keras.Variable) else variable)


class FoldAdam(keras.optimizers.Optimizer):
    """Adam over fold-stacked variables (the fold axis first) whose folds step independently.
    Each step the model says which folds had training rows (:meth:`apply_fold_gradients`); an
    idle fold is not touched (weights, moments and step count stay), and each fold's bias
    correction uses its own step count: every fold moves exactly as an Adam of its own would
    (``keras.optimizers.Adam``, AdamW's decoupled decay with ``weight_decay``). Built on
    Keras' public optimizer API only: its moments are its own state (:meth:`moments_of`)."""

    def __init__(self, folds: int, learning_rate: float, weight_decay: float | None = None,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 **kwargs):  # fmt: skip
        super().__init__(learning_rate=learning_rate, name="fold_adam", **kwargs)
        self.folds = folds
        self.decay = weight_decay  # applied here per active fold (Keras' own would hit all)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.moments: dict[int, tuple] = {}

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        first, second = self.add_optimizer_variables(variables, ["momentum", "velocity"])
        self.moments = {
            _identity(v): (m, s) for v, m, s in zip(variables, first, second, strict=True)
        }
        self.fold_steps = self.add_variable((self.folds,), "zeros", name="fold_steps")
        self.fold_active = self.add_variable((self.folds,), "ones", name="fold_active")
        self.fold_alpha = self.add_variable((self.folds,), "zeros", name="fold_alpha")

    def moments_of(self, variable) -> tuple:
        """Adam's first and second moment of ``variable`` (both with its fold axis)."""
        return self.moments[_identity(variable)]

    def apply_fold_gradients(self, gradients, variables, active) -> None:
        """One step for the folds marked in ``active`` (F,) (1 = had training rows)."""
        if not self.built:
            self.build(variables)
        self.fold_active.assign(active)
        # each fold's bias-corrected step size, once a step (not once a variable)
        local_step = self.fold_steps + 1
        beta_1_power = ops.power(ops.cast(self.beta_1, "float32"), local_step)
        beta_2_power = ops.power(ops.cast(self.beta_2, "float32"), local_step)
        rate = ops.cast(self.learning_rate, "float32")
        self.fold_alpha.assign(active * rate * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power))
        self.apply_gradients(zip(gradients, variables, strict=True))
        self.fold_steps.assign_add(active)

    def update_step(self, gradient, variable, learning_rate):
        """AdamW's decoupled decay ``w ← w − w·decay·rate`` (before the step, as Keras orders
        it), then Adam's update, masked per fold: ``m + a·(g − m)(1 − β₁)`` is ``m`` exactly
        for an idle fold (a = 0) and Adam's moment for an active one (a = 1); the step is
        scaled by the fold's own bias-corrected rate (0 when idle)."""
        shape = (self.folds,) + (1,) * (len(variable.shape) - 1)
        active = ops.reshape(self.fold_active, shape)
        if self.decay is not None:
            mask = ops.cast(active, variable.dtype)
            decay = ops.cast(self.decay, variable.dtype)
            rate = ops.cast(self.learning_rate, variable.dtype)
            variable.assign(variable - mask * variable * decay * rate)
        alpha = ops.reshape(self.fold_alpha, shape)
        gradient = ops.cast(gradient, variable.dtype)
        m, v = self.moments_of(variable)
        self.assign_add(m, active * (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, active * (ops.square(gradient) - v) * (1 - self.beta_2))
        self.assign_sub(variable, alpha * m / (ops.sqrt(v) + self.epsilon))

    def get_config(self):
        config = {**super().get_config(), "folds": self.folds, "weight_decay": self.decay}
        return config | {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class FoldModels(ABC):
    """The model training a group of folds, and how to feed and read it."""

    stacked: bool
    model: keras.Model
    steps: int  # steps per epoch

    def __init__(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        folds: Sequence[FoldData],
        options: StreamOptions,
        num_classes: int,
        balanced: bool = True,
        test_flip: bool = False,
    ):
        self.inputs, self.labels, self.folds = inputs, labels, list(folds)
        self.options, self.num_classes = options, num_classes
        self.test_flip = test_flip  # predictions: the mean over each sample and its mirror image
        self.class_weights = [
            class_weights(labels[f.train], num_classes, options.shares(f.train))
            if balanced
            else np.ones(num_classes, np.float32)
            for f in folds
        ]

    @abstractmethod
    def stream(self, epochs: range) -> tf.data.Dataset:
        """The training batches of ``epochs``."""

    @abstractmethod
    def fit_arguments(self) -> dict:
        """What ``model.fit`` needs besides the stream (class weights)."""

    @abstractmethod
    def weights(self) -> FoldWeights:
        """Per-fold snapshots of the model's state (for the best epoch)."""

    @abstractmethod
    def export(self, f: int) -> keras.Model:
        """Fold ``f`` as the ordinary Keras model of its configuration."""

    @abstractmethod
    def _forward_batches(self, positions: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """The inputs that give each fold its ``positions`` (and how many rows each has)."""

    @abstractmethod
    def _by_fold(self, outputs: np.ndarray) -> np.ndarray:
        """The model's outputs as ``(rows, F, K)``."""

    def fold_predictor(
        self, positions: list[np.ndarray], chunk: int = 512
    ) -> Callable[[], list[np.ndarray]]:
        """A function returning, for each fold, its probabilities ``(n_f, K)`` for its own
        ``positions`` of the inputs, with the current weights."""
        from components.features.augment import mirror

        batches, _ = self._forward_batches(positions)
        model, kind = self.model, self.options.kind

        def views(batch) -> list:
            if not self.test_flip:
                return [batch]
            if isinstance(batch, tuple):  # stacked: (x, fold mask)
                return [batch, (mirror(batch[0], kind), *batch[1:])]
            return [batch, mirror(batch, kind)]

        @tf.function
        def forward(batch):
            outputs = [model(v, training=False) for v in views(batch)]
            return tf.add_n(outputs) / len(outputs)

        pieces = [
            _slice(batches, start, start + chunk) for start in range(0, _rows(batches), chunk)
        ]

        def predict() -> list[np.ndarray]:
            if not pieces:
                return [np.zeros((0, self.num_classes), np.float32) for _ in positions]
            out = self._by_fold(np.concatenate([forward(p).numpy() for p in pieces]))
            return [out[: len(p), f] for f, p in enumerate(positions)]

        return predict


def _rows(batches) -> int:
    return len(batches[0]) if isinstance(batches, tuple) else len(batches)


def _slice(batches, start: int, stop: int):
    if isinstance(batches, tuple):
        return tuple(b[start:stop] for b in batches)
    return batches[start:stop]


class OrdinaryFolds(FoldModels):
    """One fold, one ordinary Keras model (replicated under ``MirroredStrategy``)."""

    stacked = False

    def __init__(self, inputs, labels, folds, options, num_classes, *, model_cfg, train_cfg,
                 input_sizes, strategy):  # fmt: skip
        super().__init__(
            inputs, labels, folds, options, num_classes, balanced(train_cfg), train_cfg.test_flip
        )
        from components.models import build_model
        from components.training.runtime import seed_everything

        (fold,) = self.folds
        self.train = np.unique(fold.train)
        self.steps = options.steps([self.train])
        with strategy.scope():
            seed_everything(fold.seed)
            self.model = build_model(model_cfg, num_classes=num_classes, **input_sizes)
            self.label_smoothing = train_cfg.label_smoothing
            soft = bool(train_cfg.label_smoothing or train_cfg.mixup_alpha)
            self.model.compile(
                optimizer=keras.optimizers.Adam(
                    train_cfg.learning_rate, weight_decay=train_cfg.weight_decay or None
                ),
                loss=ordinary_loss(train_cfg.label_smoothing, soft),
                # one call per epoch; MirroredStrategy's distributed iterator fails inside
                # Keras' multi-step loop, so several replicas step one by one
                steps_per_execution=self.steps if strategy.num_replicas_in_sync == 1 else 1,
            )

    def stream(self, epochs: range) -> tf.data.Dataset:
        fold = self.folds[0]
        data = training_stream(
            self.inputs, self.labels, self.train, fold.seed, self.options, epochs
        )
        if self.options.mixup_alpha or not self.label_smoothing:
            return data  # mixup's targets are soft already
        k = self.num_classes  # smoothing takes one-hot targets (class weights still apply)
        return data.map(lambda x, y: (x, tf.one_hot(y, k)))

    def fit_arguments(self) -> dict:
        return {"class_weight": dict(enumerate(self.class_weights[0]))}

    def weights(self) -> FoldWeights:
        return FoldWeights(list(self.model.weights), fold_axis=False)

    def export(self, f: int) -> keras.Model:
        return self.model

    def _forward_batches(self, positions):
        (index,) = positions
        return self.inputs[index], len(index)

    def _by_fold(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[:, None]


class StackedFolds(FoldModels):
    """Several folds as one fold-stacked model, each fold with its own batch every step."""

    stacked = True

    def __init__(self, inputs, labels, folds, options, num_classes, *, model_cfg, train_cfg,
                 input_sizes, run_seed, initialise: bool = True):  # fmt: skip
        super().__init__(
            inputs, labels, folds, options, num_classes, balanced(train_cfg), train_cfg.test_flip
        )
        from components.imports import load_target
        from components.models.registry import BACKBONES
        from components.training.runtime import seed_everything

        self._setup = dict(model_cfg=model_cfg, train_cfg=train_cfg, input_sizes=input_sizes,
                           run_seed=run_seed)  # fmt: skip
        build = load_target(BACKBONES[model_cfg.backbone].stacked)
        seed_everything(run_seed)  # the dropout seed generator: not whatever was drawn before
        self.model = build(model_cfg, len(self.folds), input_sizes, num_classes)
        if initialise:
            self.model.initialise([f.seed for f in self.folds])  # each fold's ordinary weights
        self.model.class_weights.assign(np.stack(self.class_weights))
        self.model.label_smoothing = train_cfg.label_smoothing
        self.steps = options.steps([f.train for f in self.folds])
        self.model.compile(
            optimizer=FoldAdam(
                len(self.folds),
                learning_rate=train_cfg.learning_rate,
                weight_decay=train_cfg.weight_decay or None,
            ),
            loss=None,
            steps_per_execution=self.steps,
        )

    def stream(self, epochs: range) -> tf.data.Dataset:
        o = self.options
        table = (
            patch_stats_table(self.inputs, o.kind, o.flip, o.shift_px)
            if self.model.patch_stats_input and not o.mixup_alpha  # a mixed row has none
            else None
        )
        return fold_stream(
            self.inputs,
            self.labels,
            [f.train for f in self.folds],
            [f.seed for f in self.folds],
            o,
            epochs,
            table,
        )

    def fit_arguments(self) -> dict:
        return {}

    def keeping(self, keep: Sequence[int]) -> StackedFolds:
        """The training of this stack continued by the folds at ``keep`` only: a smaller stack
        whose every per-fold variable (weights, BatchNorm statistics, Adam's moments and step
        counts) is those folds' slice of this one's, and whose other state (the dropout seed
        generators, Adam's iteration count) is this one's."""
        keep = np.asarray(keep, np.int64)
        smaller = StackedFolds(
            self.inputs, self.labels, [self.folds[k] for k in keep], self.options,
            self.num_classes, **self._setup, initialise=False,
        )  # fmt: skip
        fold_axis = {id(v) for v in self.model.fold_state()} | {id(self.model.class_weights)}
        _carry(self.model.variables, smaller.model.variables, keep, fold_axis)
        old, new = self.model.optimizer, smaller.model.optimizer
        new.build(smaller.model.trainable_variables)
        by_fold = {id(old.fold_steps), id(old.fold_active), id(old.fold_alpha)}
        for variable in self.model.trainable_variables:
            if id(variable) in fold_axis:  # its Adam moments have the fold axis too
                by_fold |= set(map(id, old.moments_of(variable)))
        _carry(old.variables, new.variables, keep, by_fold)
        return smaller

    def weights(self) -> FoldWeights:
        return FoldWeights(self.model.fold_state(), fold_axis=True)

    def export(self, f: int) -> keras.Model:
        return self.model.export_fold(f)

    def _forward_batches(self, positions):
        """One batch per fold: row ``r`` holds each fold's ``r``-th sample (a fold's samples
        repeated up to the longest), so each fold pays only for its own samples."""
        longest = max((len(p) for p in positions), default=0)
        index = np.stack(
            [np.resize(p, longest) if len(p) else np.zeros(longest, int) for p in positions], 1
        )
        return (self.inputs[index], np.zeros((longest, len(positions)), np.float32)), longest

    def _by_fold(self, outputs: np.ndarray) -> np.ndarray:
        return outputs


def _carry(old: Sequence, new: Sequence, keep: np.ndarray, fold_axis: set[int]) -> None:
    """Assign ``old`` variables to the ``new`` ones of a smaller stack: a variable with a fold
    axis (its id in ``fold_axis``) by the folds at ``keep``, any other as it is."""
    if len(old) != len(new):
        raise AssertionError("a smaller stack of another structure")
    for before, after in zip(old, new, strict=True):
        value = keras.ops.convert_to_numpy(before)
        if id(before) in fold_axis:
            value = value[keep]
        if tuple(value.shape) != tuple(after.shape):
            raise AssertionError(f"{after.path}: {value.shape} does not fit {tuple(after.shape)}")
        after.assign(value)


def fold_models(
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
    datasets: np.ndarray | None = None,
) -> list[FoldModels]:
    """The models that train ``folds``: one stack of them all when they stack, else one
    ordinary model per fold (``datasets``: each record's dataset, for balanced epochs)."""
    stacked, _ = stacking(model_cfg, train_cfg, strategy)
    if stacked:
        options = StreamOptions.training(
            train_cfg, kind, train_cfg.batch_size, num_classes, datasets
        )
        return [
            StackedFolds(inputs, labels, folds, options, num_classes, model_cfg=model_cfg,
                         train_cfg=train_cfg, input_sizes=input_sizes, run_seed=seed)
        ]  # fmt: skip
    # an ordinary model's batch is split over its replicas
    batch = train_cfg.batch_size * strategy.num_replicas_in_sync
    options = StreamOptions.training(train_cfg, kind, batch, num_classes, datasets)
    return [
        OrdinaryFolds(inputs, labels, [fold], options, num_classes, model_cfg=model_cfg,
                      train_cfg=train_cfg, input_sizes=input_sizes, strategy=strategy)
        for fold in folds
    ]  # fmt: skip
