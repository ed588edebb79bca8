"""Attention registry: one name → one layer class (timm-style factory).

Adding a module is one file plus one line here. :func:`make_attention` takes the shared
argument names (``heads``, ``key_dim``, ``reduction``, ``kernel_size``) and passes each layer
only the ones it has, so one config serves every type.
"""

from __future__ import annotations

import inspect
from typing import Any

from components.attention.base import AttentionLayer
from components.attention.channel import (
    ChannelAttention,
    EfficientChannelAttention,
    SqueezeExcitation,
)
from components.attention.none import NoAttention
from components.attention.self_attention import SpatialSelfAttention, TemporalSelfAttention
from components.attention.spatial import CBAM, SpatialAttention

ATTENTION: dict[str, type[AttentionLayer]] = {
    "none": NoAttention,
    "se": SqueezeExcitation,
    "eca": EfficientChannelAttention,
    "channel": ChannelAttention,
    "spatial": SpatialAttention,
    "cbam": CBAM,
    "mhsa": SpatialSelfAttention,
    "temporal_mhsa": TemporalSelfAttention,
}


def attention_class(name: str) -> type[AttentionLayer]:
    """The layer class registered as ``name``; ``ValueError`` lists the valid names."""
    try:
        return ATTENTION[name]
    except KeyError:
        raise ValueError(
            f"unknown attention type {name!r}; valid types are: {', '.join(ATTENTION)}"
        ) from None


def used_options(name: str) -> tuple[str, ...]:
    """The shared option names that attention type ``name`` actually uses."""
    parameters = inspect.signature(attention_class(name).__init__).parameters
    return tuple(p for p in parameters if p not in ("self", "kwargs"))


def make_attention(name: str, layer_name: str | None = None, **options: Any) -> AttentionLayer:
    """Instantiate attention ``name`` with the options it uses (others are ignored; ``None``
    values fall back to the layer's defaults)."""
    cls = attention_class(name)
    kwargs = {k: v for k, v in options.items() if k in used_options(name) and v is not None}
    return cls(name=layer_name, **kwargs)
