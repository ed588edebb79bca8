"""Fold-stacked forms of the attention modules: F independent copies in one layer.

A stacked model trains several folds together (see :mod:`components.models.stacked`): feature
maps are ``(B, H, W, F, C)`` (fold ``f``'s copy in ``[..., f, :]``) and every weight has the
fold axis first, in the ordinary layer's ``get_weights()`` order, so a fold's weights move
between the two forms as they are (:meth:`FoldLayer.import_weights`, :meth:`FoldLayer.export`).

Every registered type has a stacked form: :class:`FoldVectorized` derives it from the ordinary
layer itself (its stateless call vectorised over the folds with ``tf.vectorized_map``), so a new
type needs nothing here. A few types have hand-written forms where they are measurably faster
(``benchmarks/RESULTS.md``, "stacked attention"); ``tests/test_stacked.py`` checks every type's
stacked form against its ordinary layer, fold by fold.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from components.attention.channel import eca_kernel_size, reduced_units


class FoldLayer(keras.layers.Layer):
    """A layer holding ``folds`` copies of its weights (fold axis first)."""

    def __init__(self, folds: int, **kwargs):
        super().__init__(**kwargs)
        self.folds = folds

    def fold_weight(self, name: str, shape: tuple[int, ...], trainable: bool = True):
        return self.add_weight(
            name=name, shape=(self.folds, *shape), initializer="zeros", trainable=trainable
        )

    def import_weights(self, f: int, values: list[np.ndarray]) -> None:
        """Set fold ``f``'s weights from the ordinary layer's ``get_weights()``."""
        variables = self.fold_variables()
        if len(values) != len(variables):
            raise ValueError(f"{self.name}: {len(values)} weights for {len(variables)} variables")
        for variable, value in zip(variables, values, strict=True):
            current = ops.convert_to_numpy(variable)
            current[f] = value
            variable.assign(current)

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

    def call(self, inputs, training=None):
        refined, _ = self.channel(inputs)
        return self.spatial(refined)


class FoldVectorized(FoldLayer):
    """The stacked form of any attention layer, derived from the layer itself: F copies of its
    weights (fold axis first, in its ``get_weights()`` order), and its stateless call
    vectorised over the folds (``tf.vectorized_map``). Exact by construction; measured against
    the hand-written forms in ``benchmarks/RESULTS.md`` ("stacked attention")."""

    def __init__(self, folds: int, make: Callable[[], keras.layers.Layer], **kwargs):
        super().__init__(folds, **kwargs)
        self.make = make

    def build(self, input_shape):
        _, height, width, _, channels = input_shape
        inner = self.make()
        inner.build((None, height, width, channels))
        self.ordinary = _Untracked(inner)  # its own variables are not this layer's
        self.stacked = [
            self.fold_weight(_name(v), tuple(v.shape), trainable=v.trainable) for v in inner.weights
        ]

    def fold_variables(self) -> list:
        return self.stacked

    def call(self, inputs, training=None):
        inner = self.ordinary.layer
        trainable = [v.trainable for v in inner.weights]
        per_fold = ops.transpose(inputs, (3, 0, 1, 2, 4))  # (F, B, H, W, C)

        def one(args):
            weights, x = args
            (out, attention), _ = inner.stateless_call(
                [w for w, t in zip(weights, trainable, strict=True) if t],
                [w for w, t in zip(weights, trainable, strict=True) if not t],
                x,
                return_attention=True,
            )
            return out, attention

        weights = [tf.convert_to_tensor(w) for w in self.stacked]
        out, attention = tf.vectorized_map(one, (weights, per_fold))
        return ops.transpose(out, (1, 2, 3, 0, 4)), _fold_second(attention)


class _Untracked:
    """Holds a layer without Keras tracking it (its variables stay out of the stacked model)."""

    def __init__(self, layer: keras.layers.Layer):
        self.layer = layer


def _name(variable) -> str:
    return variable.path.split("/", 1)[-1].replace("/", "_")


def _fold_second(attention):
    """A map with the fold axis first, ``(F, B, ...)``, as the stacked layers return maps:
    spatial maps ``(B, H, W, F, 1)``, others ``(B, F, ...)``."""
    if len(attention.shape) == 5:  # (F, B, H, W, 1)
        return ops.transpose(attention, (1, 2, 3, 0, 4))
    return ops.swapaxes(attention, 0, 1)
