"""Fold-stacked forms of the attention modules: F independent copies in one layer.

A stacked model trains the folds of one unit of work together (see
:mod:`components.models.stacked`): feature maps are ``(B, H, W, F, C)`` (fold ``f``'s copy in
``[..., f, :]``) and every weight has the fold axis first. Each layer computes exactly what
its standard layer computes, fold by fold, and :meth:`export` returns fold ``f``'s weights in
the standard layer's ``get_weights()`` order, so a fold becomes an ordinary Keras model
(``tests/test_stacked.py`` checks the two agree numerically). Initial weights follow the
standard layers' Keras initialisers, drawn per fold from that fold's own seed.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from components.attention.channel import eca_kernel_size, reduced_units


def glorot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Keras' ``glorot_uniform``: U(-l, l), l = sqrt(6 / (fan_in + fan_out)), fans as Keras
    computes them (the last two axes, times the product of the others)."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], stddev: float) -> np.ndarray:
    """Keras' ``TruncatedNormal``: normal draws beyond two standard deviations are redrawn."""
    values = rng.normal(0, stddev, size=shape)
    while (outside := np.abs(values) > 2 * stddev).any():
        values[outside] = rng.normal(0, stddev, size=int(outside.sum()))
    return values.astype(np.float32)


class FoldLayer(keras.layers.Layer):
    """A layer holding ``folds`` copies of its weights (fold axis first)."""

    def __init__(self, folds: int, **kwargs):
        super().__init__(**kwargs)
        self.folds = folds

    def fold_weight(self, name: str, shape: tuple[int, ...], trainable: bool = True):
        return self.add_weight(
            name=name, shape=(self.folds, *shape), initializer="zeros", trainable=trainable
        )

    def initial_values(self, f: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Fold ``f``'s initial weights, in :meth:`export` order (drawn from ``rng``)."""
        raise NotImplementedError

    def initialise(self, rngs: list[np.random.Generator]) -> None:
        """Draw every fold's initial weights from its own generator."""
        per_fold = [self.initial_values(f, rng) for f, rng in enumerate(rngs)]
        for index, variable in enumerate(self.fold_variables()):
            variable.assign(np.stack([values[index] for values in per_fold]))

    def fold_variables(self) -> list:
        """The weights in :meth:`export` order (each with the fold axis first)."""
        raise NotImplementedError

    def export(self, f: int) -> list[np.ndarray]:
        """Fold ``f``'s weights, shaped and ordered as the standard layer's ``get_weights()``."""
        return [ops.convert_to_numpy(v)[f] for v in self.fold_variables()]


class FoldNone(FoldLayer):
    """``none``: identity."""

    def fold_variables(self) -> list:
        return []

    def initial_values(self, f, rng):
        return []

    def call(self, inputs, training=None):
        return inputs, ops.ones_like(inputs[..., :1])


class _FoldMLP(FoldLayer):
    """Per-fold two-layer MLP over channels (the SE and CBAM-channel bottleneck)."""

    def __init__(self, folds: int, reduction: int = 4, **kwargs):
        super().__init__(folds, **kwargs)
        self.reduction = reduction

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = reduced_units(channels, self.reduction)
        self.channels, self.hidden = channels, hidden
        self.w1 = self.fold_weight("w1", (channels, hidden))
        self.b1 = self.fold_weight("b1", (hidden,))
        self.w2 = self.fold_weight("w2", (hidden, channels))
        self.b2 = self.fold_weight("b2", (channels,))

    def fold_variables(self) -> list:
        return [self.w1, self.b1, self.w2, self.b2]

    def initial_values(self, f, rng):
        c, r = self.channels, self.hidden
        return [
            glorot(rng, (c, r)),
            np.zeros(r, np.float32),
            glorot(rng, (r, c)),
            np.zeros(c, np.float32),
        ]

    def mlp(self, pooled, final_activation=None):
        hidden = ops.relu(ops.einsum("bfc,fcr->bfr", pooled, self.w1) + self.b1)
        out = ops.einsum("bfr,frc->bfc", hidden, self.w2) + self.b2
        return final_activation(out) if final_activation else out


class FoldSqueezeExcitation(_FoldMLP):
    """``se``, stacked: GAP → Dense(C/r, relu) → Dense(C, sigmoid) → scale, per fold."""

    def call(self, inputs, training=None):
        weights = self.mlp(ops.mean(inputs, axis=(1, 2)), ops.sigmoid)
        return inputs * weights[:, None, None], weights


class FoldChannelAttention(_FoldMLP):
    """``channel`` (CBAM channel branch), stacked: avg and max through one MLP, summed."""

    def call(self, inputs, training=None):
        weights = ops.sigmoid(
            self.mlp(ops.mean(inputs, axis=(1, 2))) + self.mlp(ops.max(inputs, axis=(1, 2)))
        )
        return inputs * weights[:, None, None], weights


class FoldEfficientChannelAttention(FoldLayer):
    """``eca``, stacked: GAP → 1-D conv across channels (no bias, same padding) → sigmoid."""

    def __init__(self, folds: int, kernel_size: int | None = None, **kwargs):
        super().__init__(folds, **kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self.channels = int(input_shape[-1])
        self.size = self.kernel_size or eca_kernel_size(self.channels)
        self.kernel = self.fold_weight("kernel", (self.size, 1, 1))

    def fold_variables(self) -> list:
        return [self.kernel]

    def initial_values(self, f, rng):
        return [glorot(rng, (self.size, 1, 1))]

    def call(self, inputs, training=None):
        pooled = ops.mean(inputs, axis=(1, 2))  # (B, F, C)
        before = (self.size - 1) // 2
        padded = ops.pad(pooled, [(0, 0), (0, 0), (before, self.size - 1 - before)])
        taps = self.kernel[:, :, 0, 0]  # (F, k)
        mixed = sum(
            taps[None, :, j, None] * padded[:, :, j : j + self.channels] for j in range(self.size)
        )
        weights = ops.sigmoid(mixed)
        return inputs * weights[:, None, None], weights


class FoldSpatialAttention(FoldLayer):
    """``spatial`` (CBAM), stacked: channel mean and max → k×k conv → sigmoid, per fold. The
    per-fold 2→1 convolution is a depthwise convolution over the F·2 descriptors, summed in
    pairs."""

    def __init__(self, folds: int, kernel_size: int | None = None, **kwargs):
        super().__init__(folds, **kwargs)
        self.kernel_size = kernel_size or 7

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.fold_weight("kernel", (k, k, 2, 1))
        self.bias = self.fold_weight("bias", (1,))

    def fold_variables(self) -> list:
        return [self.kernel, self.bias]

    def initial_values(self, f, rng):
        k = self.kernel_size
        return [glorot(rng, (k, k, 2, 1)), np.zeros(1, np.float32)]

    def call(self, inputs, training=None):
        _, height, width, folds, _ = inputs.shape
        descriptor = ops.concatenate(
            [ops.mean(inputs, axis=-1, keepdims=True), ops.max(inputs, axis=-1, keepdims=True)],
            axis=-1,
        )  # (B, H, W, F, 2)
        flat = ops.reshape(descriptor, (-1, height, width, folds * 2))
        k = self.kernel_size
        depthwise = ops.reshape(
            ops.transpose(self.kernel[..., 0], (1, 2, 0, 3)), (k, k, folds * 2, 1)
        )
        mixed = ops.depthwise_conv(flat, depthwise, strides=1, padding="same")
        logits = (
            ops.sum(ops.reshape(mixed, (-1, height, width, folds, 2)), axis=-1) + self.bias[:, 0]
        )
        attention = ops.sigmoid(logits)[..., None]  # (B, H, W, F, 1)
        return inputs * attention, attention


class FoldCBAM(FoldLayer):
    """``cbam``, stacked: the channel branch, then the spatial branch."""

    def __init__(self, folds: int, reduction: int = 4, kernel_size: int | None = None, **kwargs):
        super().__init__(folds, **kwargs)
        self.channel = FoldChannelAttention(folds, reduction, name="channel")
        self.spatial = FoldSpatialAttention(folds, kernel_size, name="spatial")

    def build(self, input_shape):
        self.channel.build(input_shape)
        self.spatial.build(input_shape)

    def fold_variables(self) -> list:
        return [*self.channel.fold_variables(), *self.spatial.fold_variables()]

    def initial_values(self, f, rng):
        return [*self.channel.initial_values(f, rng), *self.spatial.initial_values(f, rng)]

    def call(self, inputs, training=None):
        refined, _ = self.channel(inputs)
        return self.spatial(refined)


class FoldSpatialSelfAttention(FoldLayer):
    """``mhsa``, stacked: H·W tokens + position embedding → multi-head self-attention →
    residual + LayerNorm, per fold (the math of ``keras.layers.MultiHeadAttention``)."""

    def __init__(self, folds: int, heads: int = 2, key_dim: int | None = None, **kwargs):
        super().__init__(folds, **kwargs)
        self.heads = heads
        self.key_dim = key_dim

    def build(self, input_shape):
        _, height, width, _, channels = input_shape
        tokens, c, h = int(height) * int(width), int(channels), self.heads
        d = self.key_dim or max(1, c // h)
        self.tokens, self.width, self.head_dim = tokens, c, d
        self.position = self.fold_weight("position", (tokens, c))
        self.projections = []
        for name in ("query", "key", "value"):
            self.projections.append(
                (
                    self.fold_weight(f"{name}_kernel", (c, h, d)),
                    self.fold_weight(f"{name}_bias", (h, d)),
                )
            )
        self.out_kernel = self.fold_weight("output_kernel", (h, d, c))
        self.out_bias = self.fold_weight("output_bias", (c,))
        self.gamma = self.fold_weight("gamma", (c,))
        self.beta = self.fold_weight("beta", (c,))

    def fold_variables(self) -> list:
        projections = [v for pair in self.projections for v in pair]
        return [self.position, *projections, self.out_kernel, self.out_bias, self.gamma, self.beta]

    def initial_values(self, f, rng):
        c, h, d = self.width, self.heads, self.head_dim
        values = [truncated_normal(rng, (self.tokens, c), 0.02)]
        for _ in range(3):
            values += [glorot(rng, (c, h, d)), np.zeros((h, d), np.float32)]
        values += [glorot(rng, (h, d, c)), np.zeros(c, np.float32)]
        return [*values, np.ones(c, np.float32), np.zeros(c, np.float32)]

    def call(self, inputs, training=None):
        _, height, width, folds, channels = inputs.shape
        tokens = ops.transpose(
            ops.reshape(inputs, (-1, height * width, folds, channels)), (0, 2, 1, 3)
        )
        embedded = tokens + self.position  # (B, F, N, C)
        (wq, bq), (wk, bk), (wv, bv) = self.projections
        query = (ops.einsum("bfnc,fchd->bfnhd", embedded, wq) + bq[:, None]) / math.sqrt(
            self.head_dim
        )
        key = ops.einsum("bfnc,fchd->bfnhd", embedded, wk) + bk[:, None]
        value = ops.einsum("bfnc,fchd->bfnhd", embedded, wv) + bv[:, None]
        scores = ops.softmax(ops.einsum("bfnhd,bfmhd->bfhnm", query, key), axis=-1)
        attended = ops.einsum("bfhnm,bfmhd->bfnhd", scores, value)
        out = (
            embedded
            + ops.einsum("bfnhd,fhdc->bfnc", attended, self.out_kernel)
            + self.out_bias[:, None]
        )
        mean = ops.mean(out, axis=-1, keepdims=True)
        variance = ops.var(out, axis=-1, keepdims=True)
        normed = (out - mean) * ops.rsqrt(variance + 1e-6) * self.gamma[:, None] + self.beta[
            :, None
        ]
        back = ops.reshape(
            ops.transpose(normed, (0, 2, 1, 3)), (-1, height, width, folds, channels)
        )
        return back, ops.mean(scores, axis=2)  # map: (B, F, N, N)
