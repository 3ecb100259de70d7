"""Out-of-fold predictions of a combiner: honest hold-out scores for anything that learns."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.folds import cross_val_predict


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

    def fit_predict(k: int, train: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
        model = make().fit([f[train] for f in features], z[:, train], y[train])
        return model.predict_proba([f[held] for f in features], z[:, held])

    return cross_val_predict(fit_predict, y, num_folds, seed)[0]
