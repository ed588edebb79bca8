"""Attention modules for MER backbones, selected by name from a registry.

The registry is light (importing this package does not import Keras); the layer classes and
the map helpers load on first use.
"""

from __future__ import annotations

from components.attention.registry import ATTENTION, used_options
from components.imports import lazy_attributes

_LAZY = {
    "attention_class": "components.attention.factory",
    "make_attention": "components.attention.factory",
    "register_all": "components.attention.factory",
    "AttentionLayer": "components.attention.base",
    "attention_layers": "components.attention.maps",
    "attention_maps": "components.attention.maps",
}

__getattr__ = lazy_attributes(_LAZY)


__all__ = [
    "ATTENTION",
    "AttentionLayer",
    "attention_class",
    "attention_layers",
    "attention_maps",
    "make_attention",
    "register_all",
    "used_options",
]
