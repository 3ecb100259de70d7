"""The zoo's model configs: open_clip's own towers, one shared text tower, 32x32 input.

Only the image tower differs between zoo models (the paper's setting in miniature: different
architectures, same data, same objective). Sizes are chosen so that all models train in about an
hour on 2 CPU cores and their float16 weights stay small enough to commit.
"""

from __future__ import annotations

import copy
from typing import Any

from clipfuse.errors import ClipfuseError

IMAGE_SIZE = 32
EMBED_DIM = 64

# open_clip's native text transformer; the token table is vocab x width, so width stays small.
TEXT_CFG: dict[str, Any] = {
    "context_length": 32,
    "vocab_size": 49408,
    "width": 32,
    "heads": 2,
    "layers": 3,
}

VISION_CFGS: dict[str, dict[str, Any]] = {
    # open_clip ModifiedResNet (CLIP's RN50 design: 3-conv stem, anti-aliased strides, attention pool)
    "rn-tiny": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 64, "image_size": IMAGE_SIZE},
    # open_clip VisionTransformer, 8x8 = 64 patches of 4x4 pixels
    "vit-p4": {
        "layers": 4,
        "width": 64,
        "head_width": 32,
        "patch_size": 4,
        "image_size": IMAGE_SIZE,
    },
    # open_clip VisionTransformer, 4x4 = 16 patches of 8x8 pixels
    "vit-p8": {
        "layers": 6,
        "width": 128,
        "head_width": 32,
        "patch_size": 8,
        "image_size": IMAGE_SIZE,
    },
    # a timm ConvNeXt trunk (random init) with open_clip's linear projection head
    "timm-convnext_atto": {
        "timm_model_name": "convnext_atto",
        "timm_model_pretrained": False,
        "timm_pool": "avg",
        "timm_proj": "linear",
        "image_size": IMAGE_SIZE,
    },
}

ZOO_NAMES: tuple[str, ...] = tuple(VISION_CFGS)


def model_config(name: str, vision_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """The open_clip `model_cfg` of a zoo model (or of a custom vision config, for tests)."""
    if vision_cfg is None:
        if name not in VISION_CFGS:
            raise ClipfuseError(f"unknown zoo model {name!r} (known: {', '.join(ZOO_NAMES)})")
        vision_cfg = VISION_CFGS[name]
    return {
        "embed_dim": EMBED_DIM,
        "vision_cfg": copy.deepcopy(vision_cfg),
        "text_cfg": dict(TEXT_CFG),
    }
