"""Searching backbone subsets under a compute budget on the hold-out (what ``subset_nlc`` fits on).

Every affordable subset (total cost <= budget) is scored by the hold-out accuracy of a cheap
ensemble of its members' logits (the proxy), ties broken by that ensemble's NLL, then lower cost,
then fewer backbones: exhaustive for B <= ``exhaustive_max``, greedy forward selection beyond.
See ``cascade/subset.py`` for why the proxy is a mean and not NLC itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipfuse.combiners.static import CalibratedMean
from clipfuse.errors import FitError

PROXIES = ("calibrated_mean", "mean_logits")
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
        return (-acc, math.inf if math.isnan(nll) else nll, subset_cost(s, costs), len(s), s)

    return sorted(scores, key=key), scores, method


def subset_cost(subset: tuple[int, ...], costs: list[float]) -> float:
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
            if i not in chosen and subset_cost(chosen, costs) + costs[i] <= budget + _EPS
        ]
        if not cands:
            return scores
        scores.update(zip(cands, score_subsets(z, y, cands)))
        top = min(cands, key=lambda s: (-scores[s][0], scores[s][1], subset_cost(s, costs), s))
        if chosen and (-scores[top][0], scores[top][1]) >= (-scores[chosen][0], scores[chosen][1]):
            return scores
        chosen = top


def search_subset(
    z: torch.Tensor, y: torch.Tensor, costs: list[float], budget: float, exhaustive_max: int = 10
) -> SubsetChoice:
    """Best affordable subset by proxy accuracy (then NLL, cost, size); see the module doc."""
    ranked, scores, method = rank_subsets(z, y, costs, budget, exhaustive_max)
    best = ranked[0]
    return SubsetChoice(best, subset_cost(best, costs), *scores[best], method, len(scores))


def shortlist(
    ranked: list[tuple[int, ...]], costs: list[float], budget: float, size: int
) -> list[tuple[int, ...]]:
    """Half the proxy's best subsets, half its best *maximal* ones (no backbone fits on top).

    A mean-of-logits proxy cannot see the input-conditioned complementarity NLC exploits, and
    so tends to under-rate large subsets; the maximal ones give NLC its chance.
    """
    spare = lambda s: budget + _EPS - subset_cost(s, costs)  # noqa: E731
    maximal = [s for s in ranked if all(i in s or costs[i] > spare(s) for i in range(len(costs)))]
    picked = list(dict.fromkeys([*maximal[: size // 2], *ranked]))
    return picked[:size]
