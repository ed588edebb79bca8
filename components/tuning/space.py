"""The search space: distinct model variants × training values, from ``tune.space``."""

from __future__ import annotations

import itertools
from typing import Any

from components.attention import used_options
from components.config import AttentionConfig, ModelConfig, TuneSpaceConfig, model_label
from components.errors import ConfigError
from components.models.placement import PlacementError, Placer
from components.models.registry import BACKBONES

OPTIONS = ("heads", "key_dim", "reduction", "kernel_size")


def model_variants(space: TuneSpaceConfig, dropout: float) -> list[ModelConfig]:
    """Every distinct, valid model: options only where the type uses them, placements only
    where the backbone has them and the attention fits (``none`` once per backbone)."""
    variants: list[ModelConfig] = []
    rejected: list[str] = []
    for backbone, kind in itertools.product(space.backbone, space.attention):
        if kind == "none":
            variants.append(ModelConfig(backbone, AttentionConfig("none"), (), dropout))
            continue
        used = [o for o in OPTIONS if o in used_options(kind)]
        values = [getattr(space, o) for o in used]
        for placement in space.placement:
            for combo in itertools.product(*values):
                attention = AttentionConfig(kind, **dict(zip(used, combo, strict=True)))
                try:
                    Placer(backbone, BACKBONES[backbone].points, attention, tuple(placement))
                except PlacementError as exc:
                    rejected.append(f"{backbone}/{kind}@{'+'.join(placement)}: {exc}")
                    continue
                variants.append(ModelConfig(backbone, attention, tuple(placement), dropout))
    unique = list(dict.fromkeys(variants))
    if not unique:
        raise ConfigError(
            "tune.space gives no valid model; every combination was rejected: "
            + "; ".join(rejected[:4])
            + (f" (and {len(rejected) - 4} more)" if len(rejected) > 4 else "")
        )
    return unique


def training_grid(space: TuneSpaceConfig) -> list[dict[str, Any]]:
    return [
        {"learning_rate": lr, "batch_size": batch, "epochs": epochs}
        for lr, batch, epochs in itertools.product(
            space.learning_rate, space.batch_size, space.epochs
        )
    ]


def trials(space: TuneSpaceConfig, dropout: float) -> list[dict[str, Any]]:
    """Every point of the space as a plain dict (what a trial's ``config['point']`` holds)."""
    return [
        {"model": model.as_dict(), **training}
        for model, training in itertools.product(
            model_variants(space, dropout), training_grid(space)
        )
    ]


def describe(point: dict[str, Any]) -> str:
    """Short label of a point: ``ststnet/cbam@fused lr=0.001``."""
    return f"{model_label(point['model'])} lr={point['learning_rate']:g}"
