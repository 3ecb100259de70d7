"""Safe mix: fusion only where the hold-out says it helps, else the best single backbone.

The safety rule (issue 11) uses the labelled hold-out alone: K-fold cross-validated
log-likelihood of two candidates, each refitted inside every fold --
(a) the single backbone with the best in-fold accuracy (ties: lower NLL), temperature-scaled;
(b) the shrunk mix (``clipfuse.combiners.shrunk_mix``).
The single backbone is used only if its summed held-out NLL is lower AND it wins in at least
``required_wins`` of the folds (default: all 5 -- on the demo images a looser rule picked a wrong
backbone at 1 shot on CIFAR-10, costing 4.6 points on the worst seed; BENCHMARKS.md "Fusion");
the chosen candidate is then fitted on the whole hold-out. Both candidates are
a weight vector over backbones (one-hot / T for the single one), so prediction stays one einsum,
inductive, one image at a time. Fewer than ``2 * folds`` labels: no cross-validation, the mix is
used and ``fallback_`` says why (recorded, never silent).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners._optim import minimise_lbfgs
from clipfuse.combiners.confidence import ConfidenceMix
from clipfuse.combiners.registry import register_combiner
from clipfuse.combiners.shrunk_mix import ShrunkMix
from clipfuse.errors import FitError


def fit_single(z: torch.Tensor, y: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Weights (B,): 1/T on the backbone with the best accuracy (ties: lower NLL), 0 elsewhere."""
    acc = (z.argmax(-1) == y).float().mean(-1)
    nll = torch.stack([F.cross_entropy(zb, y) for zb in z])
    best = int(torch.argmax(acc - 1e-6 * nll))
    log_t = torch.zeros((), device=z.device, requires_grad=True)
    bound = math.log(100.0)

    def loss() -> torch.Tensor:
        return F.cross_entropy(z[best] / log_t.clamp(-bound, bound).exp(), y, reduction="sum")

    minimise_lbfgs([log_t], loss, max_iter)
    w = torch.zeros(z.shape[0], device=z.device)
    w[best] = 1.0 / float(log_t.detach().clamp(-bound, bound).exp())
    return w


@register_combiner(groups=("fusion",))
class SafeMix(ShrunkMix):
    """Shrunk mix or the best single backbone, whichever has the lower K-fold CV NLL on the hold-out.

    Fitted: ``weights_`` (B,), ``choice_`` ("fusion" or "single"), ``cv_nll_fusion_``,
    ``cv_nll_single_`` (mean held-out NLL per example; None without CV), ``single_wins_`` (folds
    the single backbone won), ``fallback_``.
    """

    name = "safe_mix"

    def __init__(
        self,
        *,
        shrinkage: float = 1.0,
        folds: int = 5,
        required_wins: int = 5,
        seed: int = 0,
        max_iter: int = 100,
        device: str = "cpu",
    ) -> None:
        super().__init__(shrinkage=shrinkage, max_iter=max_iter, device=device)
        self.folds = folds
        self.required_wins = required_wins
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.folds < 2:
            raise FitError(f"{self.name}: folds must be >= 2; got {self.folds}")
        if not 1 <= self.required_wins <= self.folds:
            raise FitError(
                f"{self.name}: required_wins must be in [1, folds={self.folds}]; "
                f"got {self.required_wins}"
            )

    def _cv_nll(self, z: torch.Tensor, y: torch.Tensor) -> tuple[float, float, int]:
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(y.numel(), generator=gen).to(y.device)
        totals = {"fusion": 0.0, "single": 0.0}
        single_wins = 0
        for k in range(self.folds):
            test = order[k :: self.folds]
            train = torch.cat([order[j :: self.folds] for j in range(self.folds) if j != k])
            zt, yt = z[:, train], y[train]
            fold = {}
            for name, w in (
                ("fusion", self._fit_fusion(zt, yt)[0]),
                ("single", fit_single(zt, yt, self.max_iter)),
            ):
                fused = torch.einsum("b,bnc->nc", w, z[:, test])
                fold[name] = float(F.cross_entropy(fused, y[test], reduction="sum"))
                totals[name] += fold[name]
            single_wins += fold["single"] < fold["fusion"]
        n = y.numel()
        return totals["fusion"] / n, totals["single"] / n, single_wins

    def fit_notes(self) -> dict[str, Any]:
        self._check_fitted()
        notes = super().fit_notes()
        notes["choice"] = self.choice_
        if self.cv_nll_fusion_ is not None:
            notes.update(cv_nll_fusion=self.cv_nll_fusion_, cv_nll_single=self.cv_nll_single_)
        if self.fallback_ is not None:
            notes["fallback"] = self.fallback_
        return notes

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        self._fit_rule(z, y)

    def _fit_rule(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """The safety rule on labelled rows: CV NLL of fusion vs single, then the winner refit."""
        self.fallback_ = None
        self.cv_nll_fusion_ = self.cv_nll_single_ = None
        self.single_wins_ = 0
        if y.numel() < 2 * self.folds:
            self.fallback_ = (
                f"{y.numel()} labels are too few for {self.folds}-fold cross-validation: "
                "used the shrunk mix without the safety rule"
            )
            self.choice_ = "fusion"
        else:
            self.cv_nll_fusion_, self.cv_nll_single_, self.single_wins_ = self._cv_nll(z, y)
            lower = self.cv_nll_single_ < self.cv_nll_fusion_
            self.choice_ = (
                "single" if lower and self.single_wins_ >= self.required_wins else "fusion"
            )
        if self.choice_ == "single":
            self.weights_ = fit_single(z, y, self.max_iter)
            self.holdout_loss_ = float(
                F.cross_entropy(torch.einsum("b,bnc->nc", self.weights_, z), y, reduction="sum")
            )
        else:
            self.weights_, self.holdout_loss_ = self._fit_fusion(z, y)

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta, tensors = super()._get_fitted()
        meta.update(
            choice=self.choice_,
            cv_nll_fusion=self.cv_nll_fusion_,
            cv_nll_single=self.cv_nll_single_,
            single_wins=self.single_wins_,
            fallback=self.fallback_,
        )
        return meta, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super()._set_fitted(meta, tensors)
        self.choice_ = meta["choice"]
        self.cv_nll_fusion_ = meta["cv_nll_fusion"]
        self.cv_nll_single_ = meta["cv_nll_single"]
        self.single_wins_ = int(meta["single_wins"])
        self.fallback_ = meta["fallback"]


@register_combiner(groups=("fusion",))
class SafeConfMix(SafeMix, ConfidenceMix):
    """The safety rule of ``safe_mix`` around ``conf_mix`` (the shrunk mix with a confidence prior).

    The prior is estimated once on every image given to ``fit`` (labels unused, so it is no leak
    into the cross-validation folds); the rule's fusion candidate, in every fold and at the end,
    is the mix pulled toward it. Fitted: everything of ``safe_mix`` and ``conf_mix``.
    Recommended (``clipfuse fit`` without ``--method``): README "Fusion: the recommended method".
    """

    name = "safe_conf_mix"

    def __init__(
        self,
        *,
        shrinkage: float = 3.0,
        tau: float = 0.03,
        max_prior_ratio: float = 20.0,
        folds: int = 5,
        required_wins: int = 5,
        seed: int = 0,
        max_iter: int = 100,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            shrinkage=shrinkage,
            folds=folds,
            required_wins=required_wins,
            seed=seed,
            max_iter=max_iter,
            device=device,
        )
        self.tau = tau
        self.max_prior_ratio = max_prior_ratio

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        self._fit_prior(z, y)
        labelled = y >= 0
        self._fit_rule(z[:, labelled], y[labelled])
