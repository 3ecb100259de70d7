"""Greedy ensemble selection (Caruana et al., ICML 2004) on the hold-out.

Starts from the backbone with the lowest hold-out NLL and, ``rounds`` times, adds (with
replacement) the backbone whose addition lowers the hold-out NLL of the averaged logits most;
the weights are the selection counts. With replacement it can only move toward a better hold-out
fit, and the counts stay coarse, which is its known protection against overfitting few labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.errors import FitError


@register_combiner(groups=("fusion",))
class CaruanaSelection(Combiner):
    """``sum_b (n_b / sum n) z_b`` with counts ``n_b`` from greedy forward selection on NLL.

    Fitted: ``weights_`` (B,) normalised counts, ``counts_`` (B,), ``holdout_nll_``.
    """

    name = "caruana"
    min_per_class = 1

    def __init__(self, *, rounds: int = 20, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.rounds = rounds

    def _validate_params(self) -> None:
        if self.rounds < 1:
            raise FitError(f"caruana: rounds must be >= 1; got {self.rounds}")

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        b = z.shape[0]
        counts = torch.zeros(b, device=z.device)
        total = torch.zeros_like(z[0])
        for _ in range(self.rounds):
            k = counts.sum() + 1
            nll = torch.stack([F.cross_entropy((total + z[i]) / k, y) for i in range(b)])
            best = int(nll.argmin())
            counts[best] += 1
            total = total + z[best]
            self.holdout_nll_ = float(nll[best])
        self.counts_ = counts
        self.weights_ = counts / counts.sum()

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("b,bnc->nc", self.weights_, z)

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"holdout_nll": self.holdout_nll_}, {"counts": self.counts_}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.holdout_nll_ = float(meta["holdout_nll"])
        self.counts_ = tensors["counts"]
        self.weights_ = self.counts_ / self.counts_.sum()
