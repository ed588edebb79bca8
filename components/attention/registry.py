"""Attention registry: one name → one layer class (timm-style factory), the options each type
takes, and every option declared once (:data:`OPTIONS`): the config field
``model.attention.<option>``, the space axes ``tune.space.<option>`` /
``compare.space.<option>``, a model's label and the comparison's levels are derived from it.

Adding a module is one file plus one line here; it trains stacked (several folds as one model)
through the form derived from the layer itself, and a hand-written stacked form can follow if
it measurably pays. The table is light (class paths, not classes),
so the typed config can check names and options without importing Keras; the classes are
imported by :mod:`components.attention.factory` when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from components.imports import lookup
from components.parsing import Positive


@dataclass(frozen=True)
class Option:
    """An option some attention types take (a keyword argument of their layers), declared once."""

    kind: Any  # its type hint: params.yaml's value is checked against it when read
    default: Any  # None: each layer's own default
    doc: str
    label: str = ""  # a model label's part where a type takes it and it is set, e.g. "h={}"


#: every option of every attention type, in the order of the config's fields and space axes
OPTIONS: dict[str, Option] = {
    "heads": Option(Positive, 2, "attention heads", "h={}"),
    "key_dim": Option(
        Positive | None, None, "size of each head's keys and queries (channels // heads)"
    ),
    "reduction": Option(Positive, 4, "the channel gate's hidden size is channels // reduction"),
    "kernel_size": Option(
        Positive | None, None, "the map's convolution (spatial/cbam 7; eca adaptive)"
    ),
    "max_keys": Option(
        Positive | None,
        None,
        "keys/values average-pooled to at most this many positions",
        "keys≤{}",
    ),
    "positions": Option(
        Literal["learned", "none"] | None,
        None,
        "learned: a position embedding; none: no order",
        "pos={}",
    ),
}


@dataclass(frozen=True)
class AttentionEntry:
    """Where a type's layer class lives (``module:Class``) and the config options it takes."""

    target: str
    options: tuple[str, ...] = ()
    #: "module:Class" of a hand-written fold-stacked form, where one is measurably faster than
    #: the form derived from the layer itself (components.attention.stacked.FoldVectorized)
    stacked: str | None = None
    #: its output is the input scaled per channel by a function of the channel means alone, so
    #: it commutes with an average pooling (it is the same model before or after one)
    mean_gated: bool = False
    #: rank of the inputs the layer works on: 4 = feature map (B, H, W, C), 3 = sequence (B, T, D)
    input_rank: int = 4


STACKED = "components.attention.stacked:"

ATTENTION: dict[str, AttentionEntry] = {
    "none": AttentionEntry("components.attention.none:NoAttention", (), f"{STACKED}FoldNone"),
    "se": AttentionEntry(
        "components.attention.channel:SqueezeExcitation",
        ("reduction",),
        f"{STACKED}FoldSqueezeExcitation",
        mean_gated=True,
    ),
    "eca": AttentionEntry(
        "components.attention.channel:EfficientChannelAttention",
        ("kernel_size",),
        f"{STACKED}FoldEfficientChannelAttention",
        mean_gated=True,
    ),
    "channel": AttentionEntry(
        "components.attention.channel:ChannelAttention",
        ("reduction",),
        f"{STACKED}FoldChannelAttention",
    ),
    "spatial": AttentionEntry(
        "components.attention.spatial:SpatialAttention",
        ("kernel_size",),
        f"{STACKED}FoldSpatialAttention",
    ),
    "cbam": AttentionEntry(
        "components.attention.spatial:CBAM", ("reduction", "kernel_size"), f"{STACKED}FoldCBAM"
    ),
    "mhsa": AttentionEntry(
        "components.attention.self_attention:SpatialSelfAttention",
        ("heads", "key_dim", "max_keys", "positions"),
    ),
    "temporal_mhsa": AttentionEntry(
        "components.attention.self_attention:TemporalSelfAttention",
        ("heads", "key_dim", "positions"),
        input_rank=3,
    ),
}


def entry(name: str) -> AttentionEntry:
    """The entry of attention type ``name``; ``ValueError`` lists the valid names."""
    return lookup(ATTENTION, name, "attention type")


def used_options(name: str) -> tuple[str, ...]:
    """The config options that attention type ``name`` takes."""
    return entry(name).options
