"""Shrunk mix: Super Learner weights that are shrunk toward the plain mean of logits.

Why (issue 11): with 1-16 labels per class, NLC and the Super Learner lower the hold-out
cross-entropy mostly by sharpening every backbone at once, and their few-label choices are noisy.
Here the overall scale is a separate free parameter (it never changes the argmax), and only the
*mixing proportions* are learned, with an L2 penalty that pulls them back to uniform -- the mean of
logits, which on the demo images is within 0.5 points of the best backbone without any label.
The loss is the *summed* hold-out cross-entropy plus ``shrinkage * ||a||^2``, so the pull toward
uniform weakens as labels grow (1 shot: close to the mean; 16 shots: close to the Super Learner).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners._optim import minimise_lbfgs
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.errors import FitError


def fit_mix(
    z: torch.Tensor,
    y: torch.Tensor,
    shrinkage: float,
    max_iter: int,
    sample_weight: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """(weights (B,), final loss): ``w = exp(s) * softmax(a)`` minimising weighted CE + shrinkage.

    ``prior`` (B,) log proportions: the mixing logits are pulled toward it (default: uniform, i.e.
    toward the mean of logits). With a prior the fit starts both at the prior and at uniform and
    keeps the lower objective: from a peaked prior alone, L-BFGS first shrinks the overall scale
    (which flattens every gradient of ``a``) and can stay next to a wrong prior however many
    labels say otherwise (tests/test_fusion.py has that case)."""
    b = z.shape[0]
    centre = torch.zeros(b, device=z.device) if prior is None else prior.to(z.device)
    sw = torch.ones(z.shape[1], device=z.device) if sample_weight is None else sample_weight
    starts = [centre] if prior is None else [centre, torch.zeros_like(centre)]
    best: tuple[torch.Tensor, float] | None = None
    for start in starts:
        a = start.clone().requires_grad_(True)
        log_scale = torch.zeros((), device=z.device, requires_grad=True)

        def loss(a=a, log_scale=log_scale) -> torch.Tensor:
            w = torch.softmax(a, 0) * log_scale.clamp(-5.0, 5.0).exp()
            ce = F.cross_entropy(torch.einsum("b,bnc->nc", w, z), y, reduction="none")
            d = a - centre
            return (ce * sw).sum() + shrinkage * (d - d.mean()).pow(2).sum()

        final = minimise_lbfgs([a, log_scale], loss, max_iter)
        if best is None or final < best[1]:
            with torch.no_grad():
                w = torch.softmax(a, 0) * log_scale.clamp(-5.0, 5.0).exp()
            best = (w.detach(), final)
    return best


@register_combiner(groups=("fusion",))
class ShrunkMix(Combiner):
    """``sum_b w_b z_b`` with ``w = scale * softmax(a)``, ``a`` penalised toward 0 (uniform mix).

    Learns B mixing logits and one scale from the labelled hold-out (L-BFGS, deterministic).
    ``shrinkage`` (default 1.0, chosen on the demo images only: BENCHMARKS.md "Fusion") is the
    L2 strength on the centred mixing logits against the summed cross-entropy.
    Fitted: ``weights_`` (B,), ``mix_`` (B,) proportions summing to 1, ``holdout_loss_``.
    """

    name = "shrunk_mix"
    min_per_class = 1

    def __init__(self, *, shrinkage: float = 1.0, max_iter: int = 100, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.shrinkage = shrinkage
        self.max_iter = max_iter

    def _validate_params(self) -> None:
        if self.max_iter < 1:
            raise FitError(f"{self.name}: max_iter must be >= 1; got {self.max_iter}")
        if not self.shrinkage >= 0:
            raise FitError(f"{self.name}: shrinkage must be >= 0; got {self.shrinkage}")

    def _fit_fusion(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(weights, loss) of the mix on labelled rows; subclasses change the prior here."""
        return fit_mix(z, y, self.shrinkage, self.max_iter)

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        self.weights_, self.holdout_loss_ = self._fit_fusion(z, y)

    @property
    def mix_(self) -> torch.Tensor:
        return self.weights_ / self.weights_.sum()

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("b,bnc->nc", self.weights_, z)

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"holdout_loss": self.holdout_loss_}, {"weights": self.weights_}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.holdout_loss_ = float(meta["holdout_loss"])
        self.weights_ = tensors["weights"]
