"""MER backbones with named attention placements (registry light; builders load on use)."""

from __future__ import annotations

from typing import Any

from components.models.registry import BACKBONES, backbone

_LAZY = {
    "build_model": "components.models.builder",
    "model_name": "components.models.builder",
    "PlacementError": "components.models.placement",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["BACKBONES", "PlacementError", "backbone", "build_model", "model_name"]
