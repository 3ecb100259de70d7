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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.cascade.costs import resolve_costs
from clipfuse.cascade.crossfit import crossfit_proba
from clipfuse.combiners._compose import build_combiner
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.calibration import CalibratedMean
from clipfuse.combiners.folds import can_crossfit
from clipfuse.combiners.registry import combiner_from_state, make_combiner, register_combiner
from clipfuse.errors import FitError

PROXIES = ("calibrated_mean", "mean_logits")
SEARCHES = (*PROXIES, "nlc")
_CHUNK = 1 << 24  # logits entries per row chunk in the search
_EPS = 1e-9  # budget comparisons tolerate float noise in summed GFLOPs


@dataclass(frozen=True)
class SubsetChoice:
    subset: tuple[int, ...]
    cost: float
    proxy_accuracy: float
    proxy_nll: float
    method: str  # "exhaustive" or "greedy"
    evaluated: int  # subsets scored


def proxy_logits(z: torch.Tensor, y: torch.Tensor, proxy: str) -> torch.Tensor:
    """(B, N, C) logits the search ensembles: raw, or each backbone temperature-scaled."""
    if proxy == "mean_logits":
        return z
    cal = CalibratedMean(device=str(z.device)).fit(None, z, y)
    return z / cal.temperatures_.view(-1, 1, 1)


def _rank_key(acc: float, nll: float, cost: float, subset: tuple[int, ...]) -> tuple:
    return (-acc, nll, cost, len(subset), subset)


def score_subsets(
    z: torch.Tensor, y: torch.Tensor, subsets: list[tuple[int, ...]]
) -> list[tuple[float, float]]:
    """(accuracy, NLL) of the mean of each subset's logits, computed in row chunks."""
    n = y.numel()
    correct = torch.zeros(len(subsets), dtype=torch.float64)
    nll = torch.zeros(len(subsets), dtype=torch.float64)
    step = max(1, _CHUNK // (z.shape[2] * 2))
    for start in range(0, n, step):
        zc, yc = z[:, start : start + step], y[start : start + step]
        for i, s in enumerate(subsets):
            mean = zc[list(s)].mean(dim=0)
            correct[i] += float((mean.argmax(-1) == yc).sum())
            nll[i] += float(F.cross_entropy(mean, yc, reduction="sum"))
    return [(float(c) / n, float(v) / n) for c, v in zip(correct, nll)]


def _affordable_sums(
    z: torch.Tensor,
    costs: list[float],
    budget: float,
    first: int = 0,
    members: tuple[int, ...] = (),
    partial: torch.Tensor | None = None,
    spent: float = 0.0,
) -> Iterator[tuple[tuple[int, ...], torch.Tensor]]:
    """Depth-first: (subset, summed logits) of every affordable subset; one add per subset."""
    for i in range(first, z.shape[0]):
        total = spent + costs[i]
        if total > budget + _EPS:
            continue
        summed = z[i] if partial is None else partial + z[i]
        subset = (*members, i)
        yield subset, summed
        yield from _affordable_sums(z, costs, budget, i + 1, subset, summed, total)


def _exhaustive_correct(
    z: torch.Tensor, y: torch.Tensor, costs: list[float], budget: float
) -> dict[tuple[int, ...], int]:
    """Correct-count of every affordable subset's mean logits (argmax of mean = of sum)."""
    counts: dict[tuple[int, ...], int] = {}
    step = max(1, _CHUNK // (z.shape[2] * (z.shape[0] + 1)))
    for start in range(0, y.numel(), step):
        yc = y[start : start + step]
        for subset, summed in _affordable_sums(z[:, start : start + step], costs, budget):
            counts[subset] = counts.get(subset, 0) + int((summed.argmax(-1) == yc).sum())
    return counts


def rank_subsets(
    z: torch.Tensor, y: torch.Tensor, costs: list[float], budget: float, exhaustive_max: int = 10
) -> tuple[list[tuple[int, ...]], dict[tuple[int, ...], tuple[float, float]], str]:
    """(affordable subsets best-first by the proxy, their (accuracy, NLL), search method).

    NLL is computed only where it decides a tie at the top accuracy (NaN elsewhere).
    """
    if min(costs) > budget + _EPS:
        raise FitError(f"budget {budget:g} is below the cheapest backbone's cost {min(costs):g}")
    n, b = y.numel(), z.shape[0]
    nan = float("nan")
    if b <= exhaustive_max:
        counts = _exhaustive_correct(z, y, costs, budget)
        top = max(counts.values())
        tied = [s for s, c in counts.items() if c == top]
        scores = {s: (c / n, nan) for s, c in counts.items()}
        scores.update(zip(tied, score_subsets(z, y, tied)))
        method = "exhaustive"
    else:
        scores = _greedy_scores(z, y, costs, budget)
        method = "greedy"

    def key(s: tuple[int, ...]) -> tuple:
        acc, nll = scores[s]
        return (-acc, math.inf if math.isnan(nll) else nll, _cost(s, costs), len(s), s)

    return sorted(scores, key=key), scores, method


def _cost(subset: tuple[int, ...], costs: list[float]) -> float:
    return sum(costs[i] for i in subset)


def _greedy_scores(
    z: torch.Tensor, y: torch.Tensor, costs: list[float], budget: float
) -> dict[tuple[int, ...], tuple[float, float]]:
    """Forward selection; returns every subset it scored (the path is the best of each step)."""
    chosen: tuple[int, ...] = ()
    scores: dict[tuple[int, ...], tuple[float, float]] = {}
    while True:
        cands = [
            tuple(sorted((*chosen, i)))
            for i in range(z.shape[0])
            if i not in chosen and _cost(chosen, costs) + costs[i] <= budget + _EPS
        ]
        if not cands:
            return scores
        scores.update(zip(cands, score_subsets(z, y, cands)))
        top = min(cands, key=lambda s: (-scores[s][0], scores[s][1], _cost(s, costs), s))
        if chosen and (-scores[top][0], scores[top][1]) >= (-scores[chosen][0], scores[chosen][1]):
            return scores
        chosen = top


def search_subset(
    z: torch.Tensor, y: torch.Tensor, costs: list[float], budget: float, exhaustive_max: int = 10
) -> SubsetChoice:
    """Best affordable subset by proxy accuracy (then NLL, cost, size); see the module doc."""
    ranked, scores, method = rank_subsets(z, y, costs, budget, exhaustive_max)
    best = ranked[0]
    return SubsetChoice(best, _cost(best, costs), *scores[best], method, len(scores))


def shortlist(
    ranked: list[tuple[int, ...]], costs: list[float], budget: float, size: int
) -> list[tuple[int, ...]]:
    """Half the proxy's best subsets, half its best *maximal* ones (no backbone fits on top).

    A mean-of-logits proxy cannot see the input-conditioned complementarity NLC exploits, and
    so tends to under-rate large subsets; the maximal ones give NLC its chance.
    """
    spare = lambda s: budget + _EPS - _cost(s, costs)  # noqa: E731
    maximal = [s for s in ranked if all(i in s or costs[i] > spare(s) for i in range(len(costs)))]
    picked = list(dict.fromkeys([*maximal[: size // 2], *ranked]))
    return picked[:size]


@register_combiner(groups=("compute",))
class SubsetNLC(Combiner):
    """NLC (or ``controller``) over the best backbone subset within ``budget_gflops``.

    ``budget_gflops=None`` means no limit (the best subset overall); ``gflops=None`` means every
    backbone costs 1 (the budget then counts backbones). Fitted: ``subset_`` (backbone indices),
    ``required_backbones_`` (the same: ``clipfuse predict`` runs only these), ``subset_cost_``,
    ``cost_unit_``, ``search_`` (proxy, method, subsets scored, proxy hold-out accuracy),
    ``inner_`` (the controller fitted on the subset).
    """

    name = "subset_nlc"
    uses_features = True
    min_per_class = 1
    nested_params = {"controller": "controller_params"}
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
        controller: str = "nlc",
        controller_params: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(device=device)
        self.budget_gflops = budget_gflops
        self.gflops = gflops
        self.search = search
        self.exhaustive_max = exhaustive_max
        self.shortlist = shortlist
        self.folds = folds
        self.controller = controller
        self.controller_params = controller_params
        self.seed = seed

    def _validate_params(self) -> None:
        if self.search not in SEARCHES:
            raise FitError(f"subset_nlc: search must be one of {SEARCHES}; got {self.search!r}")
        if int(self.shortlist) < 1 or int(self.folds) < 2:
            raise FitError("subset_nlc: need shortlist >= 1 and folds >= 2")
        if self.budget_gflops is not None and self.budget_gflops <= 0:
            raise FitError(f"subset_nlc: budget_gflops must be > 0; got {self.budget_gflops}")

    def _nested_defaults(self, prefix: str) -> dict[str, Any]:
        defaults = make_combiner(self.controller).get_params(deep=True)
        defaults.pop("device", None)
        return defaults

    def required_backbones(self) -> list[int]:
        self._check_fitted()
        return list(self.required_backbones_)

    def _new_controller(self) -> Combiner:
        params = dict(self.controller_params or {})
        return build_combiner(self.controller, params, seed=int(self.seed), device=self.device)

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
        self.subset_cost_, self.cost_unit_, self.inner_ = _cost(best, costs), unit, inner
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
