"""The search space: distinct model variants × training values, from ``tune.space``."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from components.config import TuneSpaceConfig, model_label
from components.models.space import model_variants


def training_grid(space: TuneSpaceConfig) -> list[dict[str, Any]]:
    return [
        {"learning_rate": lr, "batch_size": batch, "epochs": epochs}
        for lr, batch, epochs in itertools.product(
            space.learning_rate, space.batch_size, space.epochs
        )
    ]


def trials(
    space: TuneSpaceConfig, dropout: float, input_sizes: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Every point of the space as a plain dict (what a trial's ``config['point']`` holds);
    ``input_sizes`` as :func:`~components.models.space.model_variants` takes them."""
    return [
        {"model": model.as_dict(), **training}
        for model, training in itertools.product(
            model_variants(space, dropout, input_sizes), training_grid(space)
        )
    ]


def describe(point: dict[str, Any]) -> str:
    """Short label of a point: ``ststnet/cbam@fused lr=0.001``."""
    return f"{model_label(point['model'])} lr={point['learning_rate']:g}"
