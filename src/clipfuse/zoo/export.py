"""Write a trained model as an open_clip `local-dir:` folder (config + float16 safetensors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from clipfuse.store.atomic import atomic_write_bytes
from clipfuse.zoo.configs import IMAGE_SIZE

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def preprocess_cfg(mean: list[float], std: list[float]) -> dict[str, Any]:
    """open_clip's eval transform for this config reproduces the training input exactly."""
    return {
        "size": IMAGE_SIZE,
        "mean": mean,
        "std": std,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }


def export_model(
    model: torch.nn.Module,
    model_cfg: dict[str, Any],
    mean: list[float],
    std: list[float],
    directory: Path,
) -> Path:
    """Float tensors are stored as float16 (open_clip casts them back on load); returns the weights path."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (
            v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
        ).contiguous()
        for k, v in model.state_dict().items()
    }
    weights = directory / WEIGHTS_FILE
    atomic_write_bytes(weights, save(state, metadata={"format": "pt"}))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg(mean, std)}
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return weights
