"""MER backbones with named attention placements (registry light; builders load on use)."""

from __future__ import annotations

from components.imports import lazy_attributes
from components.models.registry import BACKBONES, backbone

_LAZY = {
    "build_model": "components.models.builder",
    "model_name": "components.models.builder",
    "PlacementError": "components.models.placement",
}

__getattr__ = lazy_attributes(_LAZY)


__all__ = ["BACKBONES", "PlacementError", "backbone", "build_model", "model_name"]
