"""One set of input checks for the "Fusion inputs" contract (ARCHITECTURE.md), shared by the
combiners, the analysis functions and the reports.

Each check raises a one-line ClipfuseError; the caller picks the subclass (``FitError`` where a
combiner is being fitted or used, ``DataError`` for analysing data), so the message a user sees
names the step that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clipfuse.errors import ClipfuseError, DataError, FitError

ArrayLike = Any  # torch.Tensor | np.ndarray | np.memmap


def to_tensor(
    x: ArrayLike, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """A tensor of (a slice of) an array. Tensors are converted, not copied; numpy arrays that
    are read-only (memmaps) or not contiguous are copied, so torch never aliases them."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = np.asarray(x)
        if not arr.flags.writeable:
            arr = arr.copy()  # a copy is C-contiguous and writeable
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype is None and device is None:
        return t
    return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)


def check_logits(
    logits: ArrayLike, *, error: type[ClipfuseError] = FitError
) -> tuple[int, int, int]:
    """(B, N, C) of a logits array, or an error explaining the expected layout."""
    shape = tuple(int(s) for s in logits.shape)
    if len(shape) != 3:
        raise error(f"logits must have shape (backbones, samples, classes); got shape {shape}")
    b, n, c = shape
    if b < 1 or n < 1 or c < 2:
        raise error(f"logits need >= 1 backbone, >= 1 sample and >= 2 classes; got shape {shape}")
    return b, n, c


def check_labels(
    y: ArrayLike,
    n: int,
    num_classes: int | None = None,
    *,
    error: type[ClipfuseError] = FitError,
    flatten: bool = False,
    unlabelled: bool = False,
) -> torch.Tensor:
    """``y`` as ``(n,)`` int64 class indices (in ``[0, num_classes)`` when given); with
    ``unlabelled``, ``-1`` marks a row without a label (scikit-learn's semi-supervised
    convention) and at least one row must be labelled."""
    labels = to_tensor(y)
    if flatten:
        labels = labels.reshape(-1)
    if tuple(labels.shape) != (n,):
        raise error(
            f"labels must have shape ({n},) to match the inputs; got shape {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise error(f"labels must be integer class indices; got dtype {labels.dtype}")
    labels = labels.to(torch.int64)
    if num_classes is not None and n:
        lo, hi = int(labels.min()), int(labels.max())
        if lo == -1 and not unlabelled:
            raise error(
                "labels hold -1 (unlabelled rows); only combiners with uses_unlabelled accept them"
            )
        if unlabelled and not bool((labels >= 0).any()):
            raise error("every label is -1: at least one labelled row per class is needed")
        if lo < (-1 if unlabelled else 0) or hi >= num_classes:
            raise error(f"labels must lie in [0, {num_classes}); got values from {lo} to {hi}")
    return labels


def check_names(
    names: Sequence[str] | None, b: int, *, error: type[ClipfuseError] = DataError
) -> list[str]:
    """The given names (one per backbone, unique) or ``backbone_0 ... backbone_{B-1}``."""
    if names is None:
        return [f"backbone_{i}" for i in range(b)]
    out = [str(s) for s in names]
    if len(out) != b:
        raise error(f"got {len(out)} backbone names for {b} backbones")
    if len(set(out)) != len(out):
        raise error(f"backbone names must be unique, got {out}")
    return out
