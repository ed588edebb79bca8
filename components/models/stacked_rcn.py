"""RCN-W (``rcn``), fold-stacked: the folds of a unit trained as one model.

The same contract as :mod:`components.models.stacked` (feature maps ``(B, H, W, F, C)``, every
weight with the fold axis first, a batch per fold or one shared batch, per-fold BatchNorm
moments over each fold's masked rows only, fold ``f`` starting as — and exported back as — the
ordinary model of its seed). Its layers keep the ordinary model's layer names, so a fold's
weights move between the two forms layer by layer.

Every convolution is one grouped convolution over the folds; the dilated streams run the
dilated convolution and keep every third pixel, as the ordinary model does (TensorFlow cannot
stride a dilated convolution). BatchNorm's moments come from the outputs (masked per fold): the
patch-statistics shortcut of ``ststnet`` applies only to a conv + BatchNorm on the input, and
rcn's streams put a ReLU between the two.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from components.attention.stacked import FoldLayer
from components.models.fold_conv import fold_conv2d
from components.models.placement import Placer
from components.models.registry import BACKBONES
from components.models.stacked import (
    BN_EPSILON,
    FoldDense,
    StackedModel,
    masked_moments,
    stacked_attention,
    update_moving,
)

#: the streams: (name, filters, dilation), each 3×3 sampled every STRIDE pixels (the authors')
STREAMS = (("stream1", 16, 1), ("stream2", 8, 2), ("stream3", 8, 3))
STRIDE = 3


class FoldConv(FoldLayer):
    """A 2-D convolution per fold (``same`` padding), outputs ``(B, H', W', F, filters)``.

    Inputs: maps ``(B, H, W, F, C)``; or, with ``on_input``, the model input — one shared batch
    ``(B, H, W, C)`` (one wide convolution) or a batch per fold ``(B, F, H, W, C)``. With
    ``dilation`` > 1 the stride is taken by sampling every ``stride``-th output pixel."""

    def __init__(
        self,
        folds: int,
        filters: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        on_input: bool = False,
        **kwargs,
    ):
        super().__init__(folds, **kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.stride, self.dilation, self.on_input = stride, dilation, on_input

    def build(self, input_shape):
        self.cin = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.fold_weight("kernel", (k, k, self.cin, self.filters))
        self.bias = self.fold_weight("bias", (self.filters,))

    def fold_variables(self) -> list:
        return [self.kernel, self.bias]

    def call(self, x):
        folds, k = self.folds, self.kernel_size
        kernel = ops.reshape(
            ops.transpose(self.kernel, (1, 2, 3, 0, 4)), (k, k, self.cin, folds * self.filters)
        )
        if len(x.shape) == 5:  # a batch per fold, or maps: one grouped convolution
            if self.on_input:
                x = ops.transpose(x, (0, 2, 3, 1, 4))  # (B, F, H, W, C) → (B, H, W, F, C)
            x = ops.reshape(x, (-1, x.shape[1], x.shape[2], folds * self.cin))
        h = fold_conv2d(x, kernel, folds, self.stride, self.dilation)
        h = h + ops.reshape(self.bias, (-1,))
        return ops.reshape(h, (-1, h.shape[1], h.shape[2], folds, self.filters))


class FoldBatchNorm(FoldLayer):
    """BatchNorm per fold on maps ``(B, H, W, F, C)``: in training, each fold's moments over its
    masked rows (``fold_mask`` (B, F)) and every position, its moving statistics updated only
    when it has rows (a fold absent from the batch normalises with them); Keras' defaults."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.fold_weight("gamma", (channels,))
        self.beta = self.fold_weight("beta", (channels,))
        self.moving_mean = self.fold_weight("moving_mean", (channels,), trainable=False)
        self.moving_variance = self.fold_weight("moving_variance", (channels,), trainable=False)

    def fold_variables(self) -> list:
        return [self.gamma, self.beta, self.moving_mean, self.moving_variance]

    def call(self, h, fold_mask, training=None):
        if training:
            mean, variance = update_moving(self, *masked_moments(h, fold_mask))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = self.gamma * ops.rsqrt(variance + BN_EPSILON)  # (F, C)
        return h * scale + (self.beta - mean * scale)


class StackedRCN(StackedModel):
    """RCN-W with attention at its placement points (``fused``, ``recurrent``, ``pre_head``),
    stacked over folds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg, folds = self.model_cfg, self.folds
        Placer("rcn", BACKBONES["rcn"].points, cfg.attention, tuple(cfg.placement))  # validates
        placed = set(cfg.placement) if cfg.attention.type != "none" else set()
        self.stream_convs = [
            FoldConv(folds, filters, 3, STRIDE, dilation, on_input=True, name=f"{name}_conv")
            for name, filters, dilation in STREAMS
        ]
        self.stream_norms = [FoldBatchNorm(folds, name=f"{name}_bn") for name, _, _ in STREAMS]
        self.stream_dropouts = [
            keras.layers.Dropout(cfg.dropout, name=f"{name}_dropout") for name, _, _ in STREAMS
        ]
        width = sum(filters for _, filters, _ in STREAMS)
        self.feedforward = FoldConv(folds, width, 1, name="rcl_feedforward_conv")
        self.feedforward_norm = FoldBatchNorm(folds, name="rcl_feedforward_bn")
        self.recurrent = FoldConv(folds, width, 3, name="rcl_recurrent_conv")
        self.recurrent_norm = FoldBatchNorm(folds, name="rcl_recurrent_bn")
        self.attention = {
            point: stacked_attention(cfg, folds, f"{point}_{cfg.attention.type}")
            for point in BACKBONES["rcn"].points
            if point in placed
        }
        self.dropout = keras.layers.Dropout(cfg.dropout, name="dropout")
        self.head = FoldDense(folds, self.num_classes, name="probabilities")
        self._stacked_owners = [
            *[
                layer
                for pair in zip(self.stream_convs, self.stream_norms, strict=True)
                for layer in pair
            ],
            self.feedforward,
            self.feedforward_norm,
            self.recurrent,
            self.recurrent_norm,
            *self.attention.values(),
            self.head,
        ]
        self.build_all(self.input_sizes["flow_size"], width)

    def build_all(self, size: int, width: int) -> None:
        mapped = -(-size // STRIDE)
        for conv, norm, (_, filters, _) in zip(
            self.stream_convs, self.stream_norms, STREAMS, strict=True
        ):
            conv.build((None, size, size, 3))
            norm.build((None, mapped, mapped, self.folds, filters))
        maps = (None, mapped, mapped, self.folds, width)
        for layer in (self.feedforward, self.feedforward_norm, self.recurrent, self.recurrent_norm):
            layer.build(maps)
        pooled = mapped // 2
        for point, layer in self.attention.items():
            side = pooled if point == "pre_head" else mapped
            layer.build((None, side, side, self.folds, width))
        self.head.build((None, self.folds, pooled * pooled * width))
        self.built = True

    def _place(self, point: str, h):
        if point not in self.attention:
            return h
        h, _ = self.attention[point](h)
        return h

    def call(self, inputs, training=None):
        x, fold_mask, *_ = inputs  # (x, mask); rcn takes no patch statistics
        streams = []
        for conv, norm, drop in zip(
            self.stream_convs, self.stream_norms, self.stream_dropouts, strict=True
        ):
            h = norm(ops.relu(conv(x)), fold_mask, training=training)
            streams.append(drop(h, training=training))
        x = self._place("fused", ops.concatenate(streams, axis=-1))  # (B, 10, 10, F, 32)
        y = ops.relu(self.feedforward_norm(self.feedforward(x), fold_mask, training=training))
        for _ in range(2):  # the same weights each step
            y = ops.relu(self.recurrent_norm(self.recurrent(x + y), fold_mask, training=training))
        y = self._place("recurrent", y)
        size, folds, width = y.shape[1], self.folds, y.shape[-1]
        pooled = ops.max_pool(ops.reshape(y, (-1, size, size, folds * width)), 2, 2, "valid")
        half = pooled.shape[1]
        y = self._place("pre_head", ops.reshape(pooled, (-1, half, half, folds, width)))
        features = ops.reshape(ops.transpose(y, (0, 3, 1, 2, 4)), (-1, folds, half * half * width))
        return self.head(self.dropout(features, training=training))

    def import_layers(self, f: int, layers: dict[str, list[np.ndarray]]) -> None:
        for layer in self.owners():
            layer.import_weights(f, layers[layer.name])

    def export_layers(self, f: int) -> dict[str, list[np.ndarray]]:
        return {layer.name: layer.export(f) for layer in self.owners()}


def rcn(model_cfg, folds: int, input_sizes: dict[str, int], num_classes: int) -> StackedModel:
    return StackedRCN(model_cfg, folds, input_sizes, num_classes, name="stacked_rcn")
