"""Backbones: spec string -> open_clip model with its own preprocessing and metadata."""

from clipfuse.backbones.backbone import Backbone, BackboneInfo, load_backbone
from clipfuse.backbones.registry import list_backbones
from clipfuse.backbones.spec import BackboneSpec, parse_backbone_spec

__all__ = [
    "Backbone",
    "BackboneInfo",
    "BackboneSpec",
    "list_backbones",
    "load_backbone",
    "parse_backbone_spec",
]
