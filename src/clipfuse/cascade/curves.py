"""Accuracy-vs-compute curves for reports: cascade prefixes, threshold sweeps, budgets, Pareto.

Everything is FITTED on the hold-out; the test split only scores (its labels never reach a
fit). ``tradeoff_report`` runs the methods through ``clipfuse.protocol``, as ``evaluate`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from clipfuse.cascade.cascade import Cascade
from clipfuse.cascade.threshold import ALL_STAGES, operating_points
from clipfuse.combiners.costs import GFLOPS
from clipfuse.logits.bundle import ViewBundle
from clipfuse.protocol import fit_on_draw, run_notes, score_on


@dataclass(frozen=True)
class CostPoint:
    label: str
    cost: float  # mean cost per image (GFLOPs, or backbones without GFLOPs)
    accuracy: float
    backbones: float  # mean backbones run per image
    threshold: float | None = None


def prefix_points(
    cascade: Cascade, features: list, logits: Any, y: torch.Tensor, names: list[str]
) -> list[CostPoint]:
    """Stage p's controller run on every input: the curve over 1..B backbones (cheapest first)."""
    _, pred = cascade.stage_outputs(features, logits)
    y = y.to(pred.device)
    out = []
    for p, cost in enumerate(cascade.stage_costs_):
        label = "+".join(names[b] for b in cascade.order_[: p + 1])
        out.append(CostPoint(label, cost, float((pred[p] == y).float().mean()), float(p + 1)))
    return out


def threshold_points(
    cascade: Cascade, features: list, logits: Any, y: torch.Tensor, num: int = 41
) -> list[CostPoint]:
    """The cascade's exit threshold swept over ``num`` confidence quantiles (plus 0 and > 1)."""
    conf, pred = cascade.stage_outputs(features, logits)
    correct = pred == y.to(pred.device).unsqueeze(0)
    qs = torch.quantile(conf.flatten().float(), torch.linspace(0, 1, num, device=conf.device))
    ts = torch.unique(torch.cat([qs, torch.tensor([0.0, ALL_STAGES], device=conf.device)]))
    costs = torch.tensor(cascade.stage_costs_)
    return [
        CostPoint(
            f"threshold {o.threshold:.4f}", o.mean_cost, o.accuracy, o.mean_backbones, o.threshold
        )
        for o in operating_points(conf, correct, costs, ts)
    ]


def pareto_indices(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats (cheaper-or-equal and strictly better), by
    increasing cost."""
    c = np.asarray(cost, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    front, best = [], -np.inf
    for i in np.lexsort((-s, c)):
        if s[i] > best:
            front.append(int(i))
            best = s[i]
    return np.asarray(front, dtype=np.int64)


def pareto_front(points: list[CostPoint]) -> list[CostPoint]:
    """The cost points no other point beats on both cost and accuracy, by increasing cost."""
    keep = pareto_indices([p.cost for p in points], [p.accuracy for p in points])
    return [points[i] for i in keep]


def tradeoff_report(
    train: ViewBundle,
    test: ViewBundle,
    *,
    shots: int | None = 1,
    fraction: float | None = None,
    seed: int = 0,
    clamp: bool = False,
    budgets: list[float] | None = None,
    cascade_params: dict[str, Any] | None = None,
    subset_params: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """JSON-ready compute trade-offs of one hold-out draw from ``train``, scored on ``test``.

    Runs the protocol (``clipfuse.protocol``: draw, fit inputs, fit, score, costs, notes) for a
    cascade (``cascade_params``) and, per budget, a ``subset_nlc``, so their top-1 and compute
    are the numbers ``evaluate`` records for them; returns the cascade's operating point on test
    (accuracy, mean cost actually spent per image), its prefix curve over 1..B backbones, its
    threshold sweep, the Pareto front of all of these points, and each budget's chosen subset
    with its test accuracy and cost.
    """
    hold = train.holdout(shots, fraction=fraction, seed=seed, clamp=clamp)
    names = list(test.names)
    run = fit_on_draw("cascade", train, hold, params=cascade_params, seed=seed, device=device)
    cascade = run.combiner
    prefix = prefix_points(cascade, test.features, test.logits, test.labels, names)
    sweep = threshold_points(cascade, test.features, test.logits, test.labels)
    subsets = []
    for budget in budgets or []:
        params = {**(subset_params or {}), "budget_gflops": budget}
        sub = fit_on_draw("subset_nlc", train, hold, params=params, seed=seed, device=device)
        subsets.append({"budget": budget, "backbones": [names[b] for b in sub.combiner.subset_],
                        "cost": sub.combiner.subset_cost_,
                        "test_accuracy": score_on(sub.combiner, test)[0],
                        "search": sub.combiner.search_})  # fmt: skip
    notes = run_notes(run, test)
    per_image = "gflops_per_image" if cascade.cost_unit_ == GFLOPS else "backbones_per_image"
    operating = CostPoint(
        "cascade",
        notes[per_image],
        score_on(cascade, test)[0],
        notes["backbones_per_image"],
        cascade.threshold_,
    )
    return {
        "cost_unit": cascade.cost_unit_,
        "order": [names[b] for b in cascade.order_],
        "cascade": {
            **asdict(operating),
            "threshold_rule": cascade.threshold_rule_,
            "calibration": cascade.calibration_,
        },  # fmt: skip
        "prefix_curve": [asdict(p) for p in prefix],
        "threshold_curve": [asdict(p) for p in sweep],
        "pareto": [asdict(p) for p in pareto_front([*prefix, *sweep, operating])],
        "subsets": subsets,
        "holdout": {
            "budget": hold.draw.budget,
            "seed": seed,
            "content_sha256": hold.draw.content_hash,
        },
    }
