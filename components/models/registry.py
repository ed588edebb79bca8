"""Backbone registry: name → builder, the input it takes and its placement points.

Adding a backbone is one builder function plus one line here. The table is light (paths, not
functions), so the typed config checks names without importing Keras. ``stacked`` names the
builder of the backbone's fold-stacked form (several folds' copies trained as one model, see
:mod:`components.models.stacked`), when it has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.imports import lookup

#: what flows at a point: a feature map (B, H, W, C), a per-frame feature map inside a clip
#: model (B, T, H, W, C), or a sequence of frame features (B, T, D)
PointKind = Literal["map", "frame_map", "sequence"]


@dataclass(frozen=True)
class BackboneEntry:
    target: str  # "module:function" building (inputs, place, num_classes, dropout) -> outputs
    input_kind: Literal["flow", "clip"]
    points: dict[str, PointKind] = field(default_factory=dict)  # in network order
    stacked: str | None = None  # "module:function" of the fold-stacked form, if any
    #: point → the earlier point whose map it is an exact average pooling of (nothing between):
    #: a mean-gated attention (se, eca) is the same model at either, so a space keeps one
    pooled_from: dict[str, str] = field(default_factory=dict)


BACKBONES: dict[str, BackboneEntry] = {
    "ststnet": BackboneEntry(
        "components.models.backbones:ststnet",
        "flow",
        {"streams": "map", "fused": "map", "pre_head": "map"},
        stacked="components.models.stacked:ststnet",
        pooled_from={"pre_head": "fused"},  # 2×2 average pooling of the 10×10 fused map
    ),
    "off_apexnet": BackboneEntry(
        "components.models.backbones:off_apexnet",
        "flow",
        {"stem": "map", "block1": "map", "fused": "map"},
    ),
    "resnet_small": BackboneEntry(
        "components.models.backbones:resnet_small",
        "flow",
        {"stem": "map", "block1": "map", "block2": "map", "block3": "map"},
    ),
    "htnet": BackboneEntry(
        "components.models.backbones:htnet",
        "flow",
        {"stem": "map", "regions": "map", "global": "map"},
    ),
    "rcn": BackboneEntry(
        "components.models.backbones:rcn",
        "flow",
        {"fused": "map", "recurrent": "map", "pre_head": "map"},
        stacked="components.models.stacked_rcn:rcn",
    ),
    "clip_net": BackboneEntry(
        "components.models.backbones:clip_net",
        "clip",
        {"frame": "frame_map", "temporal": "sequence"},
    ),
}


def backbone(name: str) -> BackboneEntry:
    """The entry of backbone ``name``; ``ValueError`` lists the valid names."""
    return lookup(BACKBONES, name, "backbone")


def unstacked_because(backbone_name: str, stack_folds: bool = True) -> str:
    """Why the folds of ``backbone_name`` cannot train as one fold-stacked model ("" when they
    can; the distribution strategy aside: several replicas never stack)."""
    if not stack_folds:
        return "train.stack_folds is off"
    if not backbone(backbone_name).stacked:
        return f"backbone {backbone_name} has no fold-stacked form"
    return ""
