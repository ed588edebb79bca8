"""Placement: put the configured attention after named points of a backbone, and nowhere else."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from components.attention.factory import make_attention
from components.attention.registry import entry
from components.config import AttentionConfig
from components.errors import ConfigError
from components.models.paired_init import own_random_stream
from components.models.registry import PointKind

RANK_OF_KIND = {"map": 4, "frame_map": 4, "sequence": 3}


class PlacementError(ConfigError):
    """A placement point or attention type that this backbone does not have."""


@dataclass
class Placer:
    """Called by a backbone at each of its named points: ``x = place("block1", x)``."""

    backbone: str
    points: dict[str, PointKind]
    attention: AttentionConfig
    placement: tuple[str, ...]

    def __post_init__(self) -> None:
        self.validate()
        self.used: Counter[str] = Counter()

    def validate(self) -> None:
        if len(set(self.placement)) != len(self.placement):
            raise PlacementError(f"placement {list(self.placement)} names a point twice")
        if self.attention.type == "none":
            return  # nothing is placed: the points are not used
        unknown = [p for p in self.placement if p not in self.points]
        if unknown:
            raise PlacementError(
                f"backbone {self.backbone!r} has no placement point {unknown[0]!r}; "
                f"its points are: {', '.join(self.points)}"
            )
        rank = entry(self.attention.type).input_rank
        for point in self.placement:
            kind = self.points[point]
            if RANK_OF_KIND[kind] != rank:
                fits = [p for p, k in self.points.items() if RANK_OF_KIND[k] == rank]
                what = "frame sequences (B, T, D)" if rank == 3 else "feature maps (B, H, W, C)"
                raise PlacementError(
                    f"attention {self.attention.type!r} works on {what}, but point {point!r} of "
                    f"{self.backbone!r} is a {kind.replace('_', ' ')}; points that fit: "
                    f"{', '.join(fits) or 'none'}"
                )

    def __call__(self, point: str, x):
        if point not in self.points:  # a backbone bug, not a user error
            raise KeyError(f"{self.backbone} calls undeclared point {point!r}")
        if point not in self.placement or self.attention.type == "none":
            return x
        index, ordinal = self.used[point], sum(self.used.values())
        self.used[point] += 1
        name = f"{point}_{self.attention.type}" + (f"_{index}" if index else "")
        options = self.attention.as_dict()
        # the other layers' initial weights as without it; keyed by the layer's rank among the
        # model's attention layers, not its point: a gate that commutes with a pooling is the
        # same model before or after it
        with own_random_stream(f"{self.attention.type}#{ordinal}"):
            layer = make_attention(options.pop("type"), layer_name=name, **options)
            if self.points[point] == "frame_map":
                import keras

                return keras.layers.TimeDistributed(layer, name=f"{name}_frames")(x)
            return layer(x)
