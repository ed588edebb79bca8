"""Channel attention: squeeze-excitation (``se``), efficient channel attention (``eca``) and the
CBAM channel branch (``channel``)."""

from __future__ import annotations

import math

import keras
from keras import ops

from components.attention.base import PACKAGE, AttentionLayer


def reduced_units(channels: int, reduction: int) -> int:
    """Hidden width of a channel MLP: ``channels // reduction``, at least 1."""
    return max(1, channels // reduction)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SqueezeExcitation(AttentionLayer):
    """Squeeze-excitation (Hu et al. 2018): GAP → Dense(C/r, relu) → Dense(C, sigmoid) → scale.

    Args:
        reduction: channel reduction ratio ``r`` of the bottleneck (hidden width ``max(1, C//r)``).

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map.

    Returns:
        ``(B, H, W, C)`` re-weighted features; with ``return_attention=True`` also the ``(B, C)``
        channel weights in (0, 1).
    """

    def __init__(self, reduction: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.squeeze = keras.layers.Dense(
            reduced_units(channels, self.reduction), activation="relu", name="squeeze"
        )
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite")
        self.squeeze.build((None, channels))
        self.excite.build((None, self.squeeze.units))

    def attend(self, inputs, training=None):
        weights = self.excite(self.squeeze(ops.mean(inputs, axis=(1, 2))))
        return inputs * weights[:, None, None, :], weights

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: the odd number nearest ``log2(C)/gamma + b/gamma``."""
    size = int(abs(math.log2(channels) / gamma + b / gamma))
    return size if size % 2 else size + 1


@keras.saving.register_keras_serializable(package=PACKAGE)
class EfficientChannelAttention(AttentionLayer):
    """ECA (Wang et al. 2020): GAP → 1-D conv (k, no bias) across channels → sigmoid → scale.

    Args:
        kernel_size: odd 1-D kernel size over the channel axis; ``None`` picks ECA's adaptive size
            from the channel count.

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map.

    Returns:
        ``(B, H, W, C)`` re-weighted features; with ``return_attention=True`` also ``(B, C)``
        channel weights.
    """

    def __init__(self, kernel_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape):
        size = self.kernel_size or eca_kernel_size(int(input_shape[-1]))
        self.conv = keras.layers.Conv1D(1, size, padding="same", use_bias=False, name="conv")
        self.conv.build((None, int(input_shape[-1]), 1))

    def attend(self, inputs, training=None):
        pooled = ops.mean(inputs, axis=(1, 2))[..., None]  # (B, C, 1): channels as a sequence
        weights = ops.sigmoid(self.conv(pooled)[..., 0])
        return inputs * weights[:, None, None, :], weights

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelAttention(AttentionLayer):
    """CBAM channel branch (Woo et al. 2018): avg- and max-pooled descriptors through one shared
    MLP (Dense(C/r, relu) → Dense(C)), summed, sigmoid → scale.

    Args:
        reduction: reduction ratio of the shared MLP.

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map.

    Returns:
        ``(B, H, W, C)`` re-weighted features; with ``return_attention=True`` also ``(B, C)``
        channel weights.
    """

    def __init__(self, reduction: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.hidden = keras.layers.Dense(
            reduced_units(channels, self.reduction), activation="relu", name="hidden"
        )
        self.project = keras.layers.Dense(channels, name="project")
        self.hidden.build((None, channels))
        self.project.build((None, self.hidden.units))

    def attend(self, inputs, training=None):
        average = self.project(self.hidden(ops.mean(inputs, axis=(1, 2))))
        maximum = self.project(self.hidden(ops.max(inputs, axis=(1, 2))))
        weights = ops.sigmoid(average + maximum)
        return inputs * weights[:, None, None, :], weights

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}
