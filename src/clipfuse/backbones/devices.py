"""Is a torch device usable here? Asked before any model moves, so `--device cuda` on a machine
without CUDA is one line, not a driver traceback from deep inside torch."""

from __future__ import annotations

import torch

from clipfuse.errors import BackboneError


def check_device(device: str | torch.device) -> torch.device:
    """The parsed device, or BackboneError saying why it cannot be used on this machine."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise BackboneError(
            f"unknown device {str(device)!r} (use cpu, cuda, cuda:N or mps)"
        ) from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackboneError(
                f"device {str(device)!r} is not available: this machine has no usable CUDA GPU "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise BackboneError(
                f"device {str(device)!r} is not available: this machine has {count} CUDA GPU(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
        return parsed
    backend = getattr(torch.backends, parsed.type, None) or getattr(torch, parsed.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise BackboneError(
            f"device {str(device)!r} is not available on this machine; use --device cpu"
        )
    return parsed
