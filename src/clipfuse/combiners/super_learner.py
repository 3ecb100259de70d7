"""Super Learner: one learned non-negative weight per backbone, the same for every input."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners._optim import minimise_lbfgs
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.errors import FitError


@register_combiner(groups=("core",))
class SuperLearner(Combiner):
    """``sum_b w_b z_b`` with ``w_b = softplus(a_b) >= 0`` fitted by cross-entropy (L-BFGS).

    The input-independent counterpart of NLC trained on the same hold-out labels (reviewers'
    supervision-confound control, docs/method.md §6.2). Starts from ``w_b = 1/B`` (mean logits).
    No penalty on the weights: with B parameters there is little to overfit, but on a hold-out
    every backbone already gets right the weights' overall scale grows for ``max_iter`` steps,
    which sharpens the probabilities without changing the argmax.
    Fitted: ``weights_`` (B,), ``holdout_nll_``.
    """

    name = "super_learner"
    min_per_class = 1

    def __init__(self, *, max_iter: int = 100, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.max_iter = max_iter

    def _validate_params(self) -> None:
        if self.max_iter < 1:
            raise FitError(f"super_learner: max_iter must be >= 1; got {self.max_iter}")

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        b = z.shape[0]
        start = math.log(math.expm1(1.0 / b))  # softplus^-1(1/B)
        a = torch.full((b,), start, device=z.device, requires_grad=True)

        def loss() -> torch.Tensor:
            return F.cross_entropy(torch.einsum("b,bnc->nc", F.softplus(a), z), y)

        self.holdout_nll_ = minimise_lbfgs([a], loss, self.max_iter)
        self.weights_ = F.softplus(a.detach())

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("b,bnc->nc", self.weights_, z)

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"holdout_nll": self.holdout_nll_}, {"weights": self.weights_}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.holdout_nll_ = float(meta["holdout_nll"])
        self.weights_ = tensors["weights"]
