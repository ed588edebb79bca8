"""Read attention maps out of a model without changing its outputs."""

from __future__ import annotations

import keras
import numpy as np

from components.attention.base import AttentionLayer


def _attention_of(layer: keras.layers.Layer) -> AttentionLayer | None:
    """The attention layer ``layer`` is, or wraps (``TimeDistributed``), else None."""
    if isinstance(layer, AttentionLayer):
        return layer
    inner = getattr(layer, "layer", None)
    return inner if isinstance(inner, AttentionLayer) else None


def attention_layers(model: keras.Model) -> list[AttentionLayer]:
    """Every attention layer of ``model``, including those wrapped in ``TimeDistributed`` (of a
    wrapper model, those of its first nested model with attention)."""
    found = [a for layer in model.layers if (a := _attention_of(layer)) is not None]
    if found:
        return found
    nested = _nested_with_attention(model)
    return attention_layers(nested) if nested is not None else []


def _nested_with_attention(model: keras.Model) -> keras.Model | None:
    """The first model nested in ``model`` (a test-time-flip or ensemble wrapper) that has
    attention layers, at any depth."""
    return next((m for m in model.layers if isinstance(m, keras.Model) and _has_attention(m)), None)


def _has_attention(model: keras.Model) -> bool:
    return any(
        _attention_of(layer) is not None
        or (isinstance(layer, keras.Model) and _has_attention(layer))
        for layer in model.layers
    )


def attention_maps(model: keras.Model, inputs) -> dict[str, np.ndarray]:
    """``{layer name: attention map}`` for ``inputs``.

    Each map is computed from the layer's own input with the same weights, in inference mode,
    so the model's outputs are untouched. Layers inside ``TimeDistributed`` get their time axis
    folded into the batch: their maps are ``(B*T, ...)``.
    """
    hosts = [layer for layer in model.layers if _attention_of(layer) is not None]
    if not hosts:  # a wrapper (test-time flip, ensemble): the first nested model with attention
        nested = _nested_with_attention(model)
        return attention_maps(nested, inputs) if nested is not None else {}
    probe = keras.Model(model.input, [host.input for host in hosts])
    features = probe(inputs, training=False)
    if len(hosts) == 1:
        features = [features]
    maps = {}
    for host, x in zip(hosts, features, strict=True):
        attention = _attention_of(host)
        if host is not attention:  # TimeDistributed: fold time into batch
            x = keras.ops.reshape(x, (-1, *x.shape[2:]))
        maps[attention.name] = keras.ops.convert_to_numpy(attention.attention_map(x))
    return maps
