"""Input handling shared by the analysis functions.

Inputs follow the "Fusion inputs" contract (ARCHITECTURE.md): torch tensors, numpy arrays or
numpy memmaps. Large inputs are sliced *before* conversion so that a float16 memmap of features
or a (B, N, C) logits array is never copied whole into float32 memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from clipfuse.errors import DataError

ArrayLike = Any  # torch.Tensor | np.ndarray | np.memmap

# Elements of float32 per working chunk (64 MiB): bounds every chunked computation.
CHUNK_ELEMENTS = 1 << 24


def to_tensor(x: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert (a slice of) an array to a tensor without copying when already a tensor."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.as_tensor(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


def shape_of(x: ArrayLike) -> tuple[int, ...]:
    """Shape of a tensor or array as a plain tuple."""
    return tuple(int(s) for s in x.shape)


def chunk_slices(n: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` covering ``range(n)``."""
    step = max(1, int(chunk_size))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def rows_per_chunk(row_elements: int, chunk_size: int | None) -> int:
    """Rows per chunk: the caller's choice, or as many as fit in :data:`CHUNK_ELEMENTS`."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    return max(1, CHUNK_ELEMENTS // max(1, row_elements))


def check_labels(y: ArrayLike, n: int) -> torch.Tensor:
    """Labels as an int64 tensor of length ``n``."""
    labels = to_tensor(y).reshape(-1)
    if labels.numel() != n:
        raise DataError(f"labels have {labels.numel()} entries but the inputs have {n} samples")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"labels must be integer class indices, got dtype {labels.dtype}")
    return labels.to(torch.int64)


def check_logits_shape(logits: ArrayLike) -> tuple[int, int, int]:
    """(B, N, C) of a logits array, or a one-line error."""
    shape = shape_of(logits)
    if len(shape) != 3:
        raise DataError(f"logits must have shape (backbones, samples, classes), got {shape}")
    b, n, c = shape
    if b < 1 or n < 1 or c < 2:
        raise DataError(f"logits need >= 1 backbone, >= 1 sample and >= 2 classes, got {shape}")
    return b, n, c


def backbone_names(names: Sequence[str] | None, b: int) -> list[str]:
    """The given names (checked against B) or ``backbone_0 ... backbone_{B-1}``."""
    if names is None:
        return [f"backbone_{i}" for i in range(b)]
    out = [str(s) for s in names]
    if len(out) != b:
        raise DataError(f"got {len(out)} backbone names for {b} backbones")
    if len(set(out)) != len(out):
        raise DataError(f"backbone names must be unique, got {out}")
    return out


def mean_pairwise(matrix: torch.Tensor) -> float:
    """Mean of the strictly upper triangle of a symmetric (B, B) matrix (0 for one backbone)."""
    b = matrix.shape[0]
    if b < 2:
        return 0.0
    iu = torch.triu_indices(b, b, offset=1)
    return float(matrix[iu[0], iu[1]].mean())
