"""Small full-batch optimisation helper for combiners with a handful of parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch


def minimise_lbfgs(
    params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], max_iter: int
) -> float:
    """Minimise ``loss_fn`` over ``params`` with L-BFGS + strong-Wolfe line search.

    Used for per-backbone temperatures and Super Learner weights: a few (B) parameters on a
    smooth, nearly convex objective, where L-BFGS converges in tens of evaluations,
    deterministically and without a learning rate to tune. Returns the final loss.
    """
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(loss_fn())


def per_backbone_nll(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over backbones of each backbone's mean cross-entropy; z is (B, N, C)."""
    b, n, c = z.shape
    return torch.nn.functional.cross_entropy(z.reshape(b * n, c), y.repeat(b), reduction="sum") / n
