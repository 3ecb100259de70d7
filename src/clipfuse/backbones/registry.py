"""One registry of backbone specs, in the spirit of timm's `list_models("pattern")`.

It lists every open_clip (architecture, pretrained tag) pair, the project's zoo and the transformers
CLIP / SigLIP checkpoints in the local Hugging Face cache, with the
metadata that is known without loading weights (family, embed dim, input size); zoo entries also
carry the GFLOPs and accuracies from their model cards.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

from clipfuse.backbones.spec import ZOO_DIR, model_family


@dataclass
class RegistryEntry:
    spec: str
    family: str
    embed_dim: int | None
    image_size: int | None
    image_gflops: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _card_gflops(card: dict[str, Any]) -> float | None:
    """A card's GFLOPs when the current counter made it (one counter: backbones/flops.py)."""
    from clipfuse.backbones.flops import COUNTER

    return card.get("image_gflops") if card.get("image_gflops_counter") == COUNTER else None


def _zoo_entries() -> list[RegistryEntry]:
    entries = []
    for cfg_path in sorted(ZOO_DIR.glob("*/open_clip_config.json")):
        cfg = json.loads(cfg_path.read_text())
        model_cfg = cfg["model_cfg"]
        card = cfg_path.parent / "card.json"
        meta = json.loads(card.read_text()) if card.is_file() else {}
        entries.append(
            RegistryEntry(
                spec=f"zoo:{cfg_path.parent.name}",
                family=model_family(model_cfg),
                embed_dim=model_cfg.get("embed_dim"),
                image_size=model_cfg.get("vision_cfg", {}).get("image_size"),
                image_gflops=_card_gflops(meta),
                source="clipfuse zoo (trained here)",
            )
        )
    return entries


def _open_clip_entries() -> list[RegistryEntry]:
    import open_clip
    from open_clip.factory import get_model_config

    entries = []
    for arch, tag in open_clip.list_pretrained():
        cfg = get_model_config(arch) or {}
        size = cfg.get("vision_cfg", {}).get("image_size")
        entries.append(
            RegistryEntry(
                spec=f"{arch}:{tag}",
                family=model_family(cfg),
                embed_dim=cfg.get("embed_dim"),
                image_size=size[0] if isinstance(size, (list, tuple)) else size,
                image_gflops=None,
                source="open_clip pretrained tag",
            )
        )
    return entries


def _transformers_entries() -> list[RegistryEntry]:
    from clipfuse.backbones.hf_transformers import cached_transformers_models

    return [
        RegistryEntry(
            spec=m["spec"],
            family="vit",
            embed_dim=m["embed_dim"],
            image_size=m["image_size"],
            image_gflops=None,
            source="transformers (local Hugging Face cache)",
        )
        for m in cached_transformers_models()
    ]


def list_backbones(pattern: str = "*") -> list[RegistryEntry]:
    """Known specs matching a shell-style pattern (case-insensitive), zoo first, then open_clip
    tags, then the transformers CLIP / SigLIP checkpoints in the local Hugging Face cache."""
    pattern = pattern.lower()
    zoo = _zoo_entries()
    every = zoo
    if not pattern.startswith("zoo:"):
        every = every + (_open_clip_entries() if not pattern.startswith("transformers:") else [])
        every = every + _transformers_entries()
    return [e for e in every if fnmatch.fnmatch(e.spec.lower(), pattern)]
