"""Resumable training state as safetensors + JSON (no pickle, no torch.save).

`ckpt.safetensors` holds the model, the optimizer's per-parameter state and the RNG states;
`ckpt.json` holds the step, the optimizer's hyperparameters and the sha256 of the tensor file.
Both are written atomically, tensors first: the JSON is the commit marker, so a run killed while
writing leaves the previous checkpoint usable and a mismatched pair is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from clipfuse.errors import ClipfuseError
from clipfuse.store.atomic import atomic_write_bytes, atomic_write_json

TENSORS, META = "ckpt.safetensors", "ckpt.json"


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    meta: dict[str, Any],
) -> None:
    """Write the full training state after `step` completed steps."""
    tensors = {f"model/{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim/{idx}/{key}"] = torch.as_tensor(value).contiguous().cpu()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    blob = save(tensors)
    atomic_write_bytes(directory / TENSORS, blob)
    record = {
        "step": step,
        "param_groups": opt["param_groups"],
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
        **meta,
    }
    atomic_write_json(directory / META, record)


def read_meta(directory: Path) -> dict[str, Any] | None:
    path = directory / META
    return json.loads(path.read_text()) if path.is_file() else None


def load_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    """Restore model, optimizer and RNG state in place; returns the number of completed steps."""
    meta = read_meta(directory)
    if meta is None:
        raise ClipfuseError(f"no checkpoint in {str(directory)!r}")
    blob = (directory / TENSORS).read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["tensors_sha256"]:
        raise ClipfuseError(
            f"checkpoint in {str(directory)!r} is inconsistent (tensor file does not match ckpt.json)"
        )
    tensors = load(blob)
    model.load_state_dict(
        {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    )
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return int(meta["step"])
