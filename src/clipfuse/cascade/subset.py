"""The best subset of backbones for a compute budget, chosen on the hold-out; NLC on top.

Search (on the hold-out only): every affordable subset (total cost <= budget) is scored by the
hold-out accuracy of a cheap ensemble of its members' logits (the proxy), ties broken by that
ensemble's NLL, then lower cost, then fewer backbones. Exhaustive for B <= ``exhaustive_max``
(<= 1,023 subsets, one incremental depth-first pass over the rows); greedy forward selection
beyond (add the affordable backbone that scores best; stop when nothing affordable improves).
NLC (``controller``) is then fitted once, on the chosen subset.

``search`` picks the score:
- ``calibrated_mean`` (default): mean of temperature-scaled logits, one temperature per backbone
  fitted once on the hold-out (B numbers: negligible optimism). Seconds even at 1,000 classes.
- ``mean_logits``: plain mean of logits; learns nothing, so an unbiased hold-out score.
- ``nlc``: the controller itself on a ``shortlist`` of the proxy's best subsets and its best
  maximal ones, each scored by cross-fitted (``folds``-fold) accuracy -- in-sample when a class
  has one labelled row, which is optimistic and favours larger subsets. Costs
  ``shortlist x folds`` controller fits.
Why not NLC over all subsets: an honest score needs cross-fitting, i.e. 511 x 3 NLC fits for 9
backbones (hours at 1,000 classes on a CPU), and a mean-based proxy cannot see the
input-conditioned complementarity NLC exploits, so it under-rates large subsets.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from clipfuse.cascade.search import (
    PROXIES,
    SubsetChoice,
    proxy_logits,
    rank_subsets,
    score_subsets,
    search_subset,
    shortlist,
    subset_cost,
)
from clipfuse.combiners._compose import ControllerOwner
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.costs import resolve_costs
from clipfuse.combiners.folds import can_crossfit, crossfit_proba
from clipfuse.combiners.registry import combiner_from_state, register_combiner
from clipfuse.errors import FitError

SEARCHES = (*PROXIES, "nlc")
__all__ = ["SEARCHES", "SubsetChoice", "SubsetNLC", "score_subsets", "search_subset"]


@register_combiner(groups=("compute",))
class SubsetNLC(ControllerOwner, Combiner):
    """NLC (or ``controller``) over the best backbone subset within ``budget_gflops``.

    ``budget_gflops=None`` means no limit (the best subset overall); ``gflops=None`` means every
    backbone costs 1 (the budget then counts backbones). Fitted: ``subset_`` (backbone indices),
    ``required_backbones_`` (the same: ``clipfuse predict`` runs only these), ``subset_cost_``,
    ``cost_unit_``, ``search_`` (proxy, method, subsets scored, proxy hold-out accuracy),
    ``inner_`` (the controller fitted on the subset).
    """

    name = "subset_nlc"
    param_choices = {"search": SEARCHES}
    uses_features = True
    min_per_class = 1
    selects_backbones = True

    def __init__(
        self,
        *,
        budget_gflops: float | None = None,
        gflops: list[float] | None = None,
        search: str = "calibrated_mean",
        exhaustive_max: int = 10,
        shortlist: int = 8,
        folds: int = 3,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.budget_gflops = budget_gflops
        self.gflops = gflops
        self.search = search
        self.exhaustive_max = exhaustive_max
        self.shortlist = shortlist
        self.folds = folds

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.budget_gflops is not None and self.budget_gflops <= 0:
            raise FitError(f"subset_nlc: budget_gflops must be > 0; got {self.budget_gflops}")

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        assert features is not None
        costs, unit = resolve_costs(self.gflops, z.shape[0])
        budget = math.inf if self.budget_gflops is None else float(self.budget_gflops)
        proxy = "calibrated_mean" if self.search == "nlc" else self.search
        ranked, scores, method = rank_subsets(
            proxy_logits(z, y, proxy), y, costs, budget, int(self.exhaustive_max)
        )
        search = {"proxy": proxy, "method": method, "evaluated": len(scores)}
        best = ranked[0]
        if self.search == "nlc":
            best, search["shortlist"] = self._controller_pick(features, z, y, ranked, costs, budget)
        acc, nll = scores[best]
        search["proxy_accuracy"], search["proxy_nll"] = acc, None if math.isnan(nll) else nll
        subset = list(best)
        inner = self._new_controller().fit([features[i] for i in subset], z[subset], y)
        self.subset_, self.required_backbones_ = subset, list(subset)
        self.subset_cost_, self.cost_unit_, self.inner_ = subset_cost(best, costs), unit, inner
        self.search_ = search

    def _controller_pick(
        self,
        features: list[torch.Tensor],
        z: torch.Tensor,
        y: torch.Tensor,
        ranked: list[tuple[int, ...]],
        costs: list[float],
        budget: float,
    ) -> tuple[tuple[int, ...], list[dict[str, Any]]]:
        """The shortlisted subset with the best (cross-fitted) controller accuracy."""
        honest = can_crossfit(y, z.shape[2])
        table = []
        for s in shortlist(ranked, costs, budget, int(self.shortlist)):
            f_s, z_s = [features[i] for i in s], z[list(s)]
            if honest:
                proba = crossfit_proba(
                    self._new_controller, f_s, z_s, y, int(self.folds), int(self.seed)
                )
            else:
                proba = self._new_controller().fit(f_s, z_s, y).predict_proba(f_s, z_s)
            acc = float((proba.argmax(-1) == y).float().mean())
            table.append({"subset": list(s), "controller_accuracy": acc,
                          "rows": "cross-fitted" if honest else "in-sample"})  # fmt: skip
        best = max(range(len(table)), key=lambda k: (table[k]["controller_accuracy"], -k))
        return tuple(table[best]["subset"]), table

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        assert features is not None
        return self.inner_.predict_logits([features[i] for i in self.subset_], z[self.subset_])

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {"subset": self.subset_, "subset_cost": self.subset_cost_, "cost_unit": self.cost_unit_,
                "search": self.search_, "inner": self.inner_.config()}  # fmt: skip
        return meta, {f"inner.{k}": v for k, v in self.inner_.state_dict().items()}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.subset_ = [int(i) for i in meta["subset"]]
        self.required_backbones_ = list(self.subset_)
        self.subset_cost_, self.cost_unit_ = float(meta["subset_cost"]), str(meta["cost_unit"])
        self.search_ = dict(meta["search"])
        state = {k[len("inner.") :]: v for k, v in tensors.items() if k.startswith("inner.")}
        self.inner_ = combiner_from_state(meta["inner"], state, device=self.device)
