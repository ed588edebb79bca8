"""Attention layers from the registry's names: the classes, imported when first needed."""

from __future__ import annotations

from typing import Any

from components.attention.registry import ATTENTION, entry, used_options
from components.imports import load_target


def attention_class(name: str) -> type:
    """The layer class registered as ``name``; ``ValueError`` lists the valid names."""
    return load_target(entry(name).target)


def make_attention(name: str, layer_name: str | None = None, **options: Any):
    """Instantiate attention ``name`` with the options it takes (``None`` values fall back to
    the layer's defaults; options it does not take are not passed)."""
    cls = attention_class(name)
    kwargs = {k: v for k, v in options.items() if k in used_options(name) and v is not None}
    return cls(name=layer_name, **kwargs)


def stacked_class(name: str) -> type | None:
    """The fold-stacked form of attention ``name`` (None if it has none)."""
    target = entry(name).stacked
    return load_target(target) if target else None


def make_stacked_attention(name: str, folds: int, layer_name: str | None = None, **options: Any):
    """Instantiate the fold-stacked form of attention ``name`` with the options it takes."""
    cls = stacked_class(name)
    if cls is None:
        raise ValueError(f"attention {name!r} has no fold-stacked form")
    kwargs = {k: v for k, v in options.items() if k in used_options(name) and v is not None}
    return cls(folds, name=layer_name, **kwargs)


def register_all() -> None:
    """Import every layer class, so Keras can deserialise saved models that use them."""
    for name in ATTENTION:
        attention_class(name)
