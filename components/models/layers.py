"""Small serializable layers the backbones need."""

from __future__ import annotations

import keras

from components.attention.base import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelSlice(keras.layers.Layer):
    """Select channels ``start:stop`` of a ``(..., C)`` tensor (e.g. u, v out of u, v, strain).

    Args:
        start: first channel.
        stop: one past the last channel.
    """

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start = start
        self.stop = stop

    def call(self, inputs):
        return inputs[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}
