"""Build a model from the ``model`` section of ``params.yaml``."""

from __future__ import annotations

import keras

from components.config import ModelConfig
from components.imports import load_target, lookup
from components.models.backbones import input_layer
from components.models.placement import PlacementError, Placer
from components.models.registry import BACKBONES


def model_name(cfg: ModelConfig) -> str:
    if cfg.attention.type == "none":
        return f"{cfg.backbone}_plain"
    return f"{cfg.backbone}_{cfg.attention.type}_{'-'.join(cfg.placement)}"


def build_model(
    cfg: ModelConfig,
    num_classes: int = 3,
    flow_size: int = 28,
    clip_frames: int = 8,
    clip_size: int = 64,
) -> keras.Model:
    """The backbone with ``cfg.attention`` after each point in ``cfg.placement``.

    Raises :class:`PlacementError` for a backbone, point or attention/point combination that
    does not exist. ``attention.type: none`` gives exactly the plain backbone.
    """
    backbone = lookup(BACKBONES, cfg.backbone, "backbone", PlacementError)
    if not cfg.placement and cfg.attention.type != "none":
        raise PlacementError(
            f"attention {cfg.attention.type!r} needs at least one placement point; "
            f"{cfg.backbone!r} has: {', '.join(backbone.points)}"
        )
    place = Placer(cfg.backbone, backbone.points, cfg.attention, tuple(cfg.placement))
    inputs = input_layer(backbone.input_kind, flow_size, clip_frames, clip_size)
    outputs = load_target(backbone.target)(inputs, place, num_classes, cfg.dropout)
    return keras.Model(inputs, outputs, name=model_name(cfg))
