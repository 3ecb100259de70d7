"""Input handling shared by the analysis functions.

Inputs follow the "Fusion inputs" contract (ARCHITECTURE.md): torch tensors, numpy arrays or
numpy memmaps. Large inputs are sliced *before* conversion so that a float16 memmap of features
or a (B, N, C) logits array is never copied whole into float32 memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from clipfuse import _validation
from clipfuse._validation import ArrayLike
from clipfuse.errors import DataError

# Elements of float32 per working chunk (64 MiB): bounds every chunked computation.
CHUNK_ELEMENTS = 1 << 24


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
    return _validation.check_labels(y, n, error=DataError, flatten=True)


def backbone_names(names: Sequence[str] | None, b: int) -> list[str]:
    """The given names (checked against B) or ``backbone_0 ... backbone_{B-1}``."""
    return _validation.check_names(names, b, error=DataError)


def mean_pairwise(matrix: torch.Tensor) -> float:
    """Mean of the strictly upper triangle of a symmetric (B, B) matrix (0 for one backbone)."""
    b = matrix.shape[0]
    if b < 2:
        return 0.0
    iu = torch.triu_indices(b, b, offset=1)
    return float(matrix[iu[0], iu[1]].mean())
