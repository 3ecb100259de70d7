"""Deterministic class-balanced subsets, so `--limit N` is a fair quick look, not the first N files."""

from __future__ import annotations

import numpy as np


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of n samples spread as evenly as possible over the classes present.

    Each class's members are shuffled with `seed`; classes then take turns (round robin), so
    every class gets floor(n/C) or one more, until a class runs out.
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for pool in pools:
            if depth < len(pool) and len(chosen) < n:
                chosen.append(int(pool[depth]))
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))
