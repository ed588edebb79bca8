"""Spatial attention (CBAM) and CBAM itself (channel then spatial)."""

from __future__ import annotations

import keras
from keras import ops

from components.attention.base import PACKAGE, AttentionLayer
from components.attention.channel import ChannelAttention


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialAttention(AttentionLayer):
    """CBAM spatial attention: mean and max over channels → concat (H×W×2) → Conv k×k → sigmoid
    → an H×W×1 map that scales every position (a per-pixel map, never pooled to a scalar).

    Args:
        kernel_size: size of the square convolution (CBAM uses 7).

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map.

    Returns:
        ``(B, H, W, C)`` re-weighted features; with ``return_attention=True`` also the
        ``(B, H, W, 1)`` spatial map in (0, 1).
    """

    def __init__(self, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self.conv = keras.layers.Conv2D(1, self.kernel_size, padding="same", name="conv")
        self.conv.build((None, input_shape[1], input_shape[2], 2))

    def attend(self, inputs, training=None):
        descriptor = ops.concatenate(
            [ops.mean(inputs, axis=-1, keepdims=True), ops.max(inputs, axis=-1, keepdims=True)],
            axis=-1,
        )
        attention = ops.sigmoid(self.conv(descriptor))
        return inputs * attention, attention

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CBAM(AttentionLayer):
    """Convolutional block attention module: :class:`ChannelAttention` then :class:`SpatialAttention`.

    Args:
        reduction: reduction ratio of the channel branch.
        kernel_size: convolution size of the spatial branch.

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map.

    Returns:
        ``(B, H, W, C)`` features; with ``return_attention=True`` also the ``(B, H, W, 1)``
        spatial map (the channel weights are available from ``self.channel``).
    """

    def __init__(self, reduction: int = 4, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.kernel_size = kernel_size
        self.channel = ChannelAttention(reduction, name="channel")
        self.spatial = SpatialAttention(kernel_size, name="spatial")

    def build(self, input_shape):
        self.channel.build(input_shape)
        self.spatial.build(input_shape)

    def attend(self, inputs, training=None):
        refined, _ = self.channel.attend(inputs, training=training)
        return self.spatial.attend(refined, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "kernel_size": self.kernel_size,
        }
