"""``none``: the identity, so "no attention" is a point in the same search space."""

from __future__ import annotations

import keras
from keras import ops

from components.attention.base import PACKAGE, AttentionLayer


@keras.saving.register_keras_serializable(package=PACKAGE)
class NoAttention(AttentionLayer):
    """Identity layer with a uniform attention map.

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map.

    Returns:
        The inputs unchanged; with ``return_attention=True`` also a ``(B, H, W, 1)`` map of ones.
    """

    def attend(self, inputs, training=None):
        return inputs, ops.ones_like(inputs[..., :1])
