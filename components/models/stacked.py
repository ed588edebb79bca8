"""Fold-stacked backbones: the F folds of one unit of work trained as one model.

Tiny MER models (STSTNet has 1.7k parameters) use a CPU poorly: most of a training step is
per-op overhead. Stacking the folds of a unit makes every op F times wider. In training, each
fold's copy gets **its own batch** of its own training samples (inputs ``(B, F, H, W, C)``,
one grouped convolution; a mask marks padding rows), so no fold computes on samples it may not
learn from, and BatchNorm uses **per-fold masked moments**: no statistic of a fold ever
includes its test or validation subjects. The moments come from the rows' input-patch
statistics (:mod:`components.models.patch_stats`: the mean and mean outer product of the
3×3×cin patches give the conv outputs' moments without a pass over them, forward or backward),
which the training stream looks up per sample and augmentation (else from the outputs). A
shared batch ``(B, H, W, C)`` (every fold sees the same samples, masked per fold) is accepted
too (its patch statistics computed in the step). Fold ``f``'s copy starts as the ordinary Keras
model of its configuration built from its own seed (:meth:`StackedModel.initialise`), steps its
optimizer only when it has rows in the batch (:meth:`StackedModel.train_step`), and can be
exported back as that ordinary model (:meth:`StackedModel.export_fold`), which computes the same
function (tested).

Layout: feature maps ``(B, H, W, F, C)``, every weight with the fold axis first, outputs
``(B, F, classes)``.

``ststnet`` here fuses conv → BN → ReLU → 3×3/3 max-pool of its three streams. With ``s`` the
BN scale (whose sign is gamma's), max-pooling ``relu(s·h + t)`` equals
``relu(t + |s|·maxpool(sign(s)·h))``, so the convolution runs with sign-flipped kernels and the
affine map and ReLU run on the pooled map (9× smaller) — exact for either sign of ``s``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from components.attention.factory import make_stacked_attention
from components.attention.stacked import FoldLayer
from components.config import ModelConfig
from components.models.fold_conv import fold_conv2d
from components.models.paired_init import own_random_stream
from components.models.patch_stats import patch_size, patch_statistics
from components.models.placement import Placer
from components.models.registry import BACKBONES

STREAMS = (3, 5, 8)  # ststnet's stream widths (the authors' code)
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3  # keras.layers.BatchNormalization defaults


def masked_moments(h, fold_mask):
    """Per-fold mean and (biased) variance of maps ``h`` (B, *positions, F, C) over each fold's
    masked rows (``fold_mask`` (B, F)) and every position, and each fold's row count (F,)."""
    positions = tuple(range(1, len(h.shape) - 2))
    count = ops.sum(fold_mask, axis=0)
    safe = ops.maximum(count, 1.0)[:, None]
    mean = ops.einsum("bf,bfc->fc", fold_mask, ops.mean(h, axis=positions)) / safe
    second = ops.einsum("bf,bfc->fc", fold_mask, ops.mean(h * h, axis=positions)) / safe
    return mean, ops.maximum(second - mean**2, 0.0), count


def update_moving(layer, mean, variance, count):
    """A training step's BatchNorm bookkeeping per fold: ``layer``'s moving statistics take the
    batch moments as Keras' BatchNormalization does, except that a fold with no rows in the
    batch (``count`` 0) keeps its own and normalises with them; returns the moments to use."""
    seen = ops.cast(count > 0, "float32")[:, None]
    momentum = 1.0 - (1.0 - BN_MOMENTUM) * seen
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    mean = seen * mean + (1.0 - seen) * layer.moving_mean
    variance = seen * variance + (1.0 - seen) * layer.moving_variance
    return mean, variance


def stacked_attention(cfg: ModelConfig, folds: int, name: str):
    """The fold-stacked form of ``cfg``'s attention (its options), named ``name``."""
    options = cfg.attention.as_dict()
    with own_random_stream(name):  # as the ordinary model makes it (placement.py)
        return make_stacked_attention(options.pop("type"), folds, name, **options)


class FoldStreams(FoldLayer):
    """STSTNet's streams, stacked: 3×3 convs (3, 5, 8 filters) + BN + ReLU (+ attention at
    ``streams``) + 3×3/3 max-pool, concatenated: ``(B, S, S, 3)`` → ``(B, S/3, S/3, F, 16)``."""

    def __init__(self, folds: int, stream_attention: list | None = None, **kwargs):
        super().__init__(folds, **kwargs)
        self.stream_attention = stream_attention  # one stacked attention per stream, or None

    def build(self, input_shape):
        self.cin = int(input_shape[-1])
        width = sum(STREAMS)
        self.kernel = self.fold_weight("kernel", (3, 3, self.cin, width))
        self.bias = self.fold_weight("bias", (width,))
        self.gamma = self.fold_weight("gamma", (width,))
        self.beta = self.fold_weight("beta", (width,))
        self.moving_mean = self.fold_weight("moving_mean", (width,), trainable=False)
        self.moving_variance = self.fold_weight("moving_variance", (width,), trainable=False)
        if self.stream_attention:
            size = int(input_shape[1])
            for layer, channels in zip(self.stream_attention, STREAMS, strict=True):
                layer.build((None, size, size, self.folds, channels))

    def fold_variables(self) -> list:
        return [
            self.kernel,
            self.bias,
            self.gamma,
            self.beta,
            self.moving_mean,
            self.moving_variance,
        ]

    def patch_moments(self, x, fold_mask):
        """Per-fold mean and (biased) variance of the conv outputs for a **shared** batch
        ``x`` (B, H, W, cin), over each fold's masked samples and every position, from the input
        patches (:func:`~components.models.patch_stats.patch_statistics`)."""
        return self.stats_moments(patch_statistics(x), fold_mask)

    def stats_moments(self, stats, fold_mask):
        """Per-fold mean and (biased) variance of the conv outputs from the rows' patch
        statistics ``stats``: (B, P + P²) for a shared batch, (B, F, P + P²) for per-fold
        batches, over each fold's masked rows (no pass over the F-times-wider outputs)."""
        size = patch_size(self.cin)
        count = ops.sum(fold_mask, axis=0)  # (F,)
        layout = "bf,bs->fs" if len(stats.shape) == 2 else "bf,bfs->fs"
        pooled = ops.einsum(layout, fold_mask, stats) / ops.maximum(count, 1.0)[:, None]
        mu = pooled[:, :size]  # (F, P): mean patch
        sigma = ops.reshape(pooled[:, size:], (self.folds, size, size))  # mean outer product
        w = ops.reshape(self.kernel, (self.folds, size, self.kernel.shape[-1]))  # (F, P, C)
        linear = ops.einsum("fp,fpc->fc", mu, w)
        mean = linear + self.bias
        second_moment = (
            ops.einsum("fpc,fpq,fqc->fc", w, sigma, w) + 2 * self.bias * linear + self.bias**2
        )
        return mean, ops.maximum(second_moment - mean**2, 0.0), count

    def output_moments(self, h, fold_mask):
        """Per-fold mean and (biased) variance of the conv outputs ``h`` (B, H, W, F·C) of
        **per-fold** batches, over each fold's masked rows and every position (passes over
        ``h``: used when the rows come without patch statistics)."""
        flat = ops.reshape(h, (-1, h.shape[1] * h.shape[2], self.folds, sum(STREAMS)))
        return masked_moments(flat, fold_mask)

    def call(self, x, fold_mask, training=None, patch_stats=None):
        """``x``: the shared batch ``(B, H, W, cin)`` or one batch per fold
        ``(B, F, H, W, cin)`` (see :meth:`conv`); ``fold_mask`` (B, F) marks, in training, the
        rows each fold learns from (its BatchNorm moments use only those); ``patch_stats``
        (B, F, P + P²), optional, the per-fold rows' patch statistics."""
        folds, width = self.folds, sum(STREAMS)
        # the BN scale's sign is gamma's: the conv runs with kernels flipped by it, so that
        # max-pooling before the affine map is exact (see the module docstring)
        sign = 1.0 if self.stream_attention else ops.where(self.gamma < 0, -1.0, 1.0)
        sign = ops.stop_gradient(sign * ops.ones_like(self.gamma))  # (F, C)
        h = self.conv(x, self.kernel * sign[:, None, None, None], self.bias * sign)
        if training:
            if len(x.shape) == 4:
                mean, variance, count = self.patch_moments(x, fold_mask)
            elif patch_stats is not None:
                mean, variance, count = self.stats_moments(patch_stats, fold_mask)
            else:  # moments of sign·conv: the mean flips back, the variance does not change
                signed_mean, variance, count = self.output_moments(h, fold_mask)
                mean = signed_mean * sign
            mean, variance = update_moving(self, mean, variance, count)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = self.gamma * ops.rsqrt(variance + BN_EPSILON)  # (F, C)
        shift = self.beta - mean * scale
        flat_scale, flat_shift = ops.reshape(scale, (-1,)), ops.reshape(shift, (-1,))
        if not self.stream_attention:
            # h holds sign·conv: relu(scale·conv + shift) = relu(shift + |scale|·h)
            pooled = ops.max_pool(h, 3, strides=3, padding="same")
            out = ops.relu(flat_shift + ops.abs(flat_scale) * pooled)
            return ops.reshape(out, (-1, out.shape[1], out.shape[2], folds, width))
        h = ops.relu(h * flat_scale + flat_shift)
        size = h.shape[1]
        h = ops.reshape(h, (-1, size, size, folds, width))
        parts, start = [], 0
        for layer, channels in zip(self.stream_attention, STREAMS, strict=True):
            part, _ = layer(h[..., start : start + channels])
            parts.append(part)
            start += channels
        h = ops.reshape(ops.concatenate(parts, axis=-1), (-1, size, size, folds * width))
        pooled = ops.max_pool(h, 3, strides=3, padding="same")
        return ops.reshape(pooled, (-1, pooled.shape[1], pooled.shape[2], folds, width))

    def conv(self, x, kernel, bias):
        """The streams' 3×3 convolutions of every fold: ``(B, H, W, F·C)``. ``x`` is the shared
        batch ``(B, H, W, cin)`` (one wide convolution), or one batch per fold
        ``(B, F, H, W, cin)`` (one grouped convolution, fold ``f`` convolving only its own
        samples: evaluating each fold on its own validation subjects costs what those samples
        cost, not F times their union)."""
        folds, width = self.folds, kernel.shape[-1]
        flat = ops.reshape(ops.transpose(kernel, (1, 2, 3, 0, 4)), (3, 3, self.cin, folds * width))
        if len(x.shape) == 5:
            _, _, height, size, cin = x.shape
            x = ops.reshape(ops.transpose(x, (0, 2, 3, 1, 4)), (-1, height, size, folds * cin))
            # not Keras' conv: it compiles grouped convolutions with XLA on CPU (10× slower)
            return fold_conv2d(x, flat, folds) + ops.reshape(bias, (-1,))
        return ops.conv(x, flat, strides=1, padding="same") + ops.reshape(bias, (-1,))

    def import_layers(self, f: int, layers: dict[str, list[np.ndarray]]) -> None:
        """Fold ``f`` from ststnet's ``stream{c}_conv`` / ``stream{c}_bn`` weights."""
        parts = [layers[f"stream{c}_conv"] + layers[f"stream{c}_bn"] for c in STREAMS]
        joined = [np.concatenate(values, axis=-1) for values in zip(*parts, strict=True)]
        self.import_weights(f, joined)

    def export_layers(self, f: int) -> dict[str, list[np.ndarray]]:
        """Fold ``f`` as ststnet's ``stream{c}_conv`` / ``stream{c}_bn`` weights."""
        values = [ops.convert_to_numpy(v)[f] for v in self.fold_variables()]
        kernel, bias, gamma, beta, mean, variance = values
        layers, start = {}, 0
        for c in STREAMS:
            part = slice(start, start + c)
            layers[f"stream{c}_conv"] = [kernel[..., part], bias[part]]
            layers[f"stream{c}_bn"] = [gamma[part], beta[part], mean[part], variance[part]]
            start += c
        return layers


class FoldDense(FoldLayer):
    """The classifier, stacked: per-fold Dense(classes, softmax) on ``(B, F, D)``."""

    def __init__(self, folds: int, units: int, **kwargs):
        super().__init__(folds, **kwargs)
        self.units = units

    def build(self, input_shape):
        self.inputs_dim = int(input_shape[-1])
        self.kernel = self.fold_weight("kernel", (self.inputs_dim, self.units))
        self.bias = self.fold_weight("bias", (self.units,))

    def fold_variables(self) -> list:
        return [self.kernel, self.bias]

    def call(self, x):
        return ops.softmax(ops.einsum("bfd,fdk->bfk", x, self.kernel) + self.bias, axis=-1)


class StackedModel(keras.Model):
    """F folds' copies of one model configuration: ``(x, fold_mask) → (B, F, classes)``; in
    training, per-fold batches may come with their rows' patch statistics,
    ``(x, fold_mask, stats)``, when :attr:`patch_stats_input` says the model uses them.

    The training loss is the sum over folds of each fold's own loss: the class-weighted
    cross-entropy averaged over that fold's samples in the batch (``fold_mask`` (B, F): 1 for
    the fold's training samples, 0 otherwise), as Keras' loss with ``class_weight`` would be on
    a batch of that fold's samples alone.
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        folds: int,
        input_sizes: dict[str, int],
        num_classes: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model_cfg = model_cfg
        self.folds = folds
        self.input_sizes = dict(input_sizes)
        self.num_classes = num_classes
        self.class_weights = self.add_weight(
            name="class_weights", shape=(folds, num_classes), initializer="ones", trainable=False
        )
        self.loss_mean = keras.metrics.Mean(name="loss")  # the epoch's mean step loss, as fit's

    patch_stats_input = False  # whether training rows may carry patch statistics
    label_smoothing = 0.0  # ε of the smoothed targets (train.label_smoothing)

    def owners(self) -> list[FoldLayer]:
        """The fold layers that own weights (set by the subclass, in network order)."""
        return self._stacked_owners

    def fold_state(self) -> list:
        """Every variable with a fold axis (weights, BN statistics), for per-fold snapshots."""
        return [v for layer in self.owners() for v in layer.fold_variables()]

    def initialise(self, seeds: list[int]) -> None:
        """Fold ``f`` starts as the ordinary model of its configuration built from
        ``seeds[f]``: the very weights it would have trained alone."""
        from components.models.builder import build_model

        for f, seed in enumerate(seeds):
            keras.utils.set_random_seed(seed)  # as the training runtime seeds an ordinary fold
            model = build_model(self.model_cfg, num_classes=self.num_classes, **self.input_sizes)
            self.import_layers(f, {layer.name: layer.get_weights() for layer in model.layers})

    def train_step(self, data):
        """Keras' step, except that each fold's optimizer step is its own: a fold with no
        training rows in this step (it has fewer steps than the longest fold of the stack)
        is left exactly as it is (:class:`~components.training.fold_models.FoldAdam`)."""
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        self.loss_mean.update_state(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        active = ops.cast(ops.sum(x[1], axis=0) > 0, "float32")  # (F,)
        self.optimizer.apply_fold_gradients(gradients, variables, active)
        return {"loss": self.loss_mean.result()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.sum(self.fold_losses(x, y, y_pred))

    def fold_losses(self, x, y, y_pred):
        """Each fold's loss ``(F,)``: the class-weighted cross-entropy over its rows. ``y``: class
        indices (B,) shared by the folds or (B, F), or soft targets (B, F, K) (mixup: weighted
        by the class of their largest entry, as Keras weights soft targets); targets smoothed
        by :attr:`label_smoothing`."""
        fold_mask = x[1]
        if len(y.shape) == 3:  # soft targets
            targets = ops.cast(y, "float32")
            chosen = ops.one_hot(ops.argmax(targets, axis=-1), self.num_classes)
        else:
            labels = ops.cast(y, "int32")  # (B,) shared by the folds, or (B, F)
            if len(labels.shape) == 1:
                labels = labels[:, None] * ops.ones((1, self.folds), "int32")
            chosen = targets = ops.one_hot(labels, self.num_classes)  # (B, F, K)
        if self.label_smoothing or len(y.shape) == 3:
            # as Keras' CategoricalCrossentropy(label_smoothing=ε)
            eps = self.label_smoothing
            targets = targets * (1.0 - eps) + eps / self.num_classes
            p = ops.clip(y_pred / ops.sum(y_pred, axis=-1, keepdims=True), 1e-7, 1.0 - 1e-7)
            cross_entropy = -ops.sum(targets * ops.log(p), axis=-1)
        else:
            picked = ops.sum(chosen * y_pred, axis=-1)
            cross_entropy = -ops.log(ops.clip(picked, 1e-7, 1.0 - 1e-7))  # (B, F), as Keras'
        weights = ops.sum(chosen * self.class_weights, axis=-1)  # (B, F)
        return ops.sum(fold_mask * weights * cross_entropy, axis=0) / ops.maximum(
            ops.sum(fold_mask, axis=0), 1.0
        )

    def export_fold(self, f: int) -> keras.Model:
        """Fold ``f`` as the ordinary Keras model of :attr:`model_cfg` (same function)."""
        from components.models.builder import build_model

        model = build_model(self.model_cfg, num_classes=self.num_classes, **self.input_sizes)
        for name, weights in self.export_layers(f).items():
            model.get_layer(name).set_weights(weights)
        return model


class StackedSTSTNet(StackedModel):
    """STSTNet with attention at its placement points, stacked over folds."""

    patch_stats_input = True  # its first layer is a 3×3 conv + BatchNorm on the input

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model_cfg, folds, input_sizes = self.model_cfg, self.folds, self.input_sizes
        entry = BACKBONES["ststnet"]
        Placer(
            "ststnet", entry.points, model_cfg.attention, tuple(model_cfg.placement)
        )  # validates
        placed = set(model_cfg.placement) if model_cfg.attention.type != "none" else set()
        kind = model_cfg.attention.type
        self.stream_attention = (
            [
                stacked_attention(model_cfg, folds, f"streams_{kind}" + (f"_{k}" if k else ""))
                for k in range(3)
            ]
            if "streams" in placed
            else None
        )
        self.streams = FoldStreams(folds, self.stream_attention, name="streams")
        self.fused = (
            stacked_attention(model_cfg, folds, f"fused_{kind}") if "fused" in placed else None
        )
        self.pre_head = (
            stacked_attention(model_cfg, folds, f"pre_head_{kind}")
            if "pre_head" in placed
            else None
        )
        self.dropout = keras.layers.Dropout(model_cfg.dropout, name="dropout")
        self.head = FoldDense(folds, self.num_classes, name="probabilities")
        self._stacked_owners = [
            self.streams,
            *(self.stream_attention or []),
            *[layer for layer in (self.fused, self.pre_head) if layer is not None],
            self.head,
        ]
        size = input_sizes["flow_size"]
        self.build_all(size)

    def build_all(self, size: int) -> None:
        x = keras.KerasTensor((None, size, size, 3))
        self.streams.build(x.shape)
        pooled = -(-size // 3)
        if self.fused:
            self.fused.build((None, pooled, pooled, self.folds, sum(STREAMS)))
        half = pooled // 2
        if self.pre_head:
            self.pre_head.build((None, half, half, self.folds, sum(STREAMS)))
        self.head.build((None, self.folds, half * half * sum(STREAMS)))
        self.built = True

    def call(self, inputs, training=None):
        x, fold_mask, *stats = inputs  # (x, mask) or (x, mask, patch statistics)
        h = self.streams(
            x, fold_mask, training=training, patch_stats=stats[0] if stats else None
        )  # (B, P, P, F, 16)
        if self.fused:
            h, _ = self.fused(h)
        size, folds, width = h.shape[1], self.folds, h.shape[-1]
        flat = ops.reshape(h, (-1, size, size, folds * width))
        pooled = ops.average_pool(flat, 2, strides=2, padding="valid")
        half = pooled.shape[1]
        h = ops.reshape(pooled, (-1, half, half, folds, width))
        if self.pre_head:
            h, _ = self.pre_head(h)
        features = ops.reshape(ops.transpose(h, (0, 3, 1, 2, 4)), (-1, folds, half * half * width))
        return self.head(self.dropout(features, training=training))

    def import_layers(self, f: int, layers: dict[str, list[np.ndarray]]) -> None:
        self.streams.import_layers(f, layers)
        for layer in [*(self.stream_attention or []), self.fused, self.pre_head, self.head]:
            if layer is not None:
                layer.import_weights(f, layers[layer.name])

    def export_layers(self, f: int) -> dict[str, list[np.ndarray]]:
        layers = self.streams.export_layers(f)
        for layer in [*(self.stream_attention or []), self.fused, self.pre_head, self.head]:
            if layer is not None:
                layers[layer.name] = layer.export(f)
        return layers


def ststnet(
    model_cfg: ModelConfig, folds: int, input_sizes: dict[str, int], num_classes: int
) -> StackedModel:
    return StackedSTSTNet(model_cfg, folds, input_sizes, num_classes, name="stacked_ststnet")
