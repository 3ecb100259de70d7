"""Calibrated mean: temperature-scale each backbone on the hold-out, then average."""

from __future__ import annotations

import math
from typing import Any

import torch

from clipfuse.combiners._optim import minimise_lbfgs, per_backbone_nll
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.errors import FitError

# Temperatures are kept in [1e-2, 1e2]: on a hold-out the backbone classifies perfectly the NLL
# keeps falling as T -> 0, and the clamp stops that run-away (its gradient is zero outside).
_LOG_T_BOUND = math.log(100.0)


@register_combiner(groups=("core",))
class CalibratedMean(Combiner):
    """Mean of ``z_b / T_b`` with one temperature per backbone fitted by NLL minimisation.

    Each ``T_b`` is fitted independently (the objective is a sum over backbones) with L-BFGS on
    ``log T_b`` -- the log keeps T positive and makes the problem well conditioned.
    Fitted: ``temperatures_`` (B,), ``holdout_nll_`` (summed per-backbone NLL after fitting).
    """

    name = "calibrated_mean"
    min_per_class = 1

    def __init__(self, *, max_iter: int = 100, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.max_iter = max_iter

    def _validate_params(self) -> None:
        if self.max_iter < 1:
            raise FitError(f"calibrated_mean: max_iter must be >= 1; got {self.max_iter}")

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        log_t = torch.zeros(z.shape[0], device=z.device, requires_grad=True)

        def loss() -> torch.Tensor:
            t = log_t.clamp(-_LOG_T_BOUND, _LOG_T_BOUND).exp()
            return per_backbone_nll(z / t.view(-1, 1, 1), y)

        self.holdout_nll_ = minimise_lbfgs([log_t], loss, self.max_iter)
        self.temperatures_ = log_t.detach().clamp(-_LOG_T_BOUND, _LOG_T_BOUND).exp()

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return (z / self.temperatures_.view(-1, 1, 1)).mean(dim=0)

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"holdout_nll": self.holdout_nll_}, {"temperatures": self.temperatures_}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.holdout_nll_ = float(meta["holdout_nll"])
        self.temperatures_ = tensors["temperatures"]
