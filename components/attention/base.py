"""What every attention layer shares: the call contract and the attention-map hook."""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "mer_attention"


class AttentionLayer(keras.layers.Layer):
    """Base class: subclasses implement :meth:`attend`, returning ``(outputs, attention_map)``.

    ``call(x)`` returns the attended features; ``call(x, return_attention=True)`` returns
    ``(outputs, attention_map)``. :meth:`attention_map` computes only the map from the layer's
    input with the same weights, so maps can be read from a trained model without changing its
    outputs (see :func:`components.attention.maps.attention_maps`).
    """

    def attend(self, inputs: Any, training: bool | None = None) -> tuple[Any, Any]:
        raise NotImplementedError

    def call(self, inputs: Any, training: bool | None = None, return_attention: bool = False):
        outputs, attention = self.attend(inputs, training=training)
        return (outputs, attention) if return_attention else outputs

    def attention_map(self, inputs: Any) -> Any:
        """The layer's attention map for ``inputs`` (inference mode)."""
        return self.attend(inputs, training=False)[1]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)
