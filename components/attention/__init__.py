"""Attention modules for MER backbones, selected by name from a registry."""

from components.attention.base import AttentionLayer
from components.attention.maps import attention_layers, attention_maps
from components.attention.registry import ATTENTION, attention_class, make_attention, used_options

__all__ = [
    "ATTENTION",
    "AttentionLayer",
    "attention_class",
    "attention_layers",
    "attention_maps",
    "make_attention",
    "used_options",
]
