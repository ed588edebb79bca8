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


def make_stacked_attention(name: str, folds: int, layer_name: str | None = None, **options: Any):
    """The fold-stacked form of attention ``name`` with the options it takes: its hand-written
    form if the registry names one, else the form derived from the ordinary layer."""
    kwargs = {k: v for k, v in options.items() if k in used_options(name) and v is not None}
    target = entry(name).stacked
    if target:
        return load_target(target)(folds, name=layer_name, **kwargs)
    from components.attention.stacked import FoldVectorized

    if entry(name).input_rank != 4:
        raise ValueError(f"attention {name!r} works on sequences: it has no stacked form")
    return FoldVectorized(folds, lambda: make_attention(name, "inner", **kwargs), name=layer_name)


def register_all() -> None:
    """Import every layer class, so Keras can deserialise saved models that use them."""
    for name in ATTENTION:
        attention_class(name)
