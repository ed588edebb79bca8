"""Attention registry: one name → one layer class (timm-style factory), and the options each
type takes.

Adding a module is one file plus one line here; it trains stacked (several folds as one model)
through the form derived from the layer itself, and a hand-written stacked form can follow if
it measurably pays. The table is light (class paths, not classes),
so the typed config can check names and options without importing Keras; the classes are
imported by :mod:`components.attention.factory` when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.imports import lookup


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
        "components.attention.self_attention:SpatialSelfAttention", ("heads", "key_dim", "max_keys")
    ),
    "temporal_mhsa": AttentionEntry(
        "components.attention.self_attention:TemporalSelfAttention",
        ("heads", "key_dim"),
        input_rank=3,
    ),
}


def entry(name: str) -> AttentionEntry:
    """The entry of attention type ``name``; ``ValueError`` lists the valid names."""
    return lookup(ATTENTION, name, "attention type")


def used_options(name: str) -> tuple[str, ...]:
    """The config options that attention type ``name`` takes."""
    return entry(name).options
