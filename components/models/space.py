"""A space of model configurations: every distinct, valid model of a set of axes (backbones,
attention types and their options, placements), as ``tune`` searches it and ``compare`` sweeps
it."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping

from components.attention import used_options
from components.attention.registry import OPTIONS, entry
from components.config import AttentionConfig, ModelConfig, ModelSpaceConfig
from components.errors import ConfigError
from components.models.placement import PlacementError, Placer
from components.models.registry import BACKBONES


def same_model_placement(backbone: str, kind: str, placement: tuple[str, ...]) -> tuple[str, ...]:
    """The placement that gives the same model: a mean-gated attention (se, eca) at a point
    that is an exact average pooling of an earlier one is the same function there (its gate
    sees the same channel means; scaling commutes with the pooling), with the same weights."""
    pooled_from = BACKBONES[backbone].pooled_from
    if not entry(kind).mean_gated:
        return placement
    moved = tuple(pooled_from.get(point, point) for point in placement)
    return moved if len(set(moved)) == len(moved) else placement


@functools.cache
def _map_positions(backbone: str, sizes: tuple[tuple[str, int], ...]) -> dict[str, int]:
    import keras

    from components.imports import load_target
    from components.models.backbones import input_layer

    entry_ = BACKBONES[backbone]
    positions: dict[str, int] = {}

    def record(point: str, x):
        if len(x.shape) >= 4:  # (B, H, W, C) or per frame (B, T, H, W, C)
            height, width = x.shape[-3:-1]
            positions[point] = max(positions.get(point, 0), int(height) * int(width))
        return x

    inputs = input_layer(entry_.input_kind, **dict(sizes))
    keras.Model(inputs, load_target(entry_.target)(inputs, record, 3, 0.0))
    return positions


def map_positions(backbone: str, input_sizes: Mapping[str, int]) -> dict[str, int]:
    """H·W of each feature-map point of ``backbone`` for these input sizes (the largest, where
    a point is called several times), from a symbolic build."""
    return _map_positions(backbone, tuple(sorted(input_sizes.items())))


def same_model_keys(
    backbone: str, attention: AttentionConfig, placement: tuple[str, ...], sizes: Mapping
) -> AttentionConfig:
    """``max_keys`` at least every placed map's positions pools nothing: the model is the one
    without it."""
    if attention.max_keys is None or attention.type != "mhsa":
        return attention
    positions = map_positions(backbone, sizes)
    if all(positions.get(point, 0) <= attention.max_keys for point in placement):
        return dataclasses.replace(attention, max_keys=None)
    return attention


def check_points(space: ModelSpaceConfig) -> None:
    """A placement naming a point no backbone of the space has is a typo, not a combination
    to skip: one line naming it and the points there are."""
    known = {point for b in space.backbone for point in BACKBONES[b].points}
    for placement in space.placement:
        for point in placement:
            if point not in known:
                where = "; ".join(f"{b}: {', '.join(BACKBONES[b].points)}" for b in space.backbone)
                raise ConfigError(
                    f"space.placement: {point!r} is not a point of any backbone of the space "
                    f"({where})"
                )


def _rejected_for(backbone: str, rejected: list[str]) -> str:
    mine = [r for r in rejected if r.startswith(f"{backbone}/")]
    return "; ".join(mine[:2]) + (f" (and {len(mine) - 2} more)" if len(mine) > 2 else "")


def model_variants(
    space: ModelSpaceConfig, dropout: float, input_sizes: Mapping[str, int] | None = None
) -> list[ModelConfig]:
    """Every distinct, valid model: options only where the type uses them, placements only
    where the backbone has them and the attention fits (``none`` once per backbone), and one
    placement of the ones that give the same model (:func:`same_model_placement`). Given the
    ``input_sizes``, ``max_keys`` is dropped where it pools nothing (:func:`same_model_keys`)."""
    check_points(space)
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
                same = same_model_placement(backbone, kind, tuple(placement))
                if input_sizes is not None:
                    attention = same_model_keys(backbone, attention, same, input_sizes)
                variants.append(ModelConfig(backbone, attention, same, dropout))
    unique = list(dict.fromkeys(variants))
    attended = {v.backbone for v in unique if v.attention.type != "none"}
    bare = [b for b in space.backbone if b not in attended]
    if attended and bare and any(k != "none" for k in space.attention):
        raise ConfigError(
            f"space: backbone {bare[0]!r} gets no attention variant (only its baseline would "
            f"train, with nothing to compare): {_rejected_for(bare[0], rejected)}"
        )
    if not unique:
        raise ConfigError(
            "the space gives no valid model; every combination was rejected: "
            + "; ".join(rejected[:4])
            + (f" (and {len(rejected) - 4} more)" if len(rejected) > 4 else "")
        )
    return unique
