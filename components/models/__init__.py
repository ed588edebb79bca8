"""MER backbones with named attention placements."""

from components.models.backbones import BACKBONES
from components.models.builder import build_model, model_name
from components.models.placement import PlacementError

__all__ = ["BACKBONES", "PlacementError", "build_model", "model_name"]
