"""Out-of-fold predictions of a combiner: honest hold-out scores for anything that learns."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.folds import stratified_folds


def crossfit_proba(
    make: Callable[[], Combiner],
    features: list[torch.Tensor],
    z: torch.Tensor,
    y: torch.Tensor,
    num_folds: int,
    seed: int,
) -> torch.Tensor:
    """(N, C) probabilities, row i from a fresh ``make()`` fitted on the folds without row i.

    Needs >= 2 rows per class (``clipfuse.combiners.folds.can_crossfit``) so every training fold
    holds every class.
    """
    fold = stratified_folds(y, num_folds, seed)
    out = torch.empty(z.shape[1], z.shape[2], device=z.device)
    for k in range(num_folds):
        held = fold == k
        if not bool(held.any()):
            continue
        model = make().fit([f[~held] for f in features], z[:, ~held], y[~held])
        out[held] = model.predict_proba([f[held] for f in features], z[:, held])
    return out
