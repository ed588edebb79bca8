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


@keras.saving.register_keras_serializable(package=PACKAGE)
class Mirror(keras.layers.Layer):
    """The input mirrored left-right (for ``kind`` flow, u → 1 − u), as training mirrors it.

    Args:
        kind: the model input, ``flow`` or ``clip``.
    """

    def __init__(self, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind

    def call(self, inputs):
        from components.features.augment import mirror

        return mirror(inputs, self.kind)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


def with_test_flip(model: keras.Model, kind: str) -> keras.Model:
    """``model`` whose probabilities are the mean over each sample and its mirror image (one
    Keras model: saved, registered and served like the model itself)."""
    inputs = keras.Input(model.input.shape[1:], name=model.input.name)
    views = [model(inputs), model(Mirror(kind, name="mirror")(inputs))]
    averaged = keras.layers.Average(name="test_flip")(views)
    return keras.Model(inputs, averaged, name=f"{model.name}_test_flip")


def probability_ensemble(members: list[keras.Model], name: str) -> keras.Model:
    """One Keras model whose probabilities are the mean of ``members``' (same input)."""
    first = members[0]
    inputs = keras.Input(first.input.shape[1:], name=first.input.name)
    # members are nested models: each needs a name of its own inside the ensemble
    renamed = [keras.Model(m.input, m.output, name=f"member{i}") for i, m in enumerate(members)]
    outputs = [m(inputs) for m in renamed]
    averaged = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="ensemble")(outputs)
    return keras.Model(inputs, averaged, name=name)
