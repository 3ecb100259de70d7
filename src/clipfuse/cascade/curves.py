"""Accuracy-vs-compute curves for reports: cascade prefixes, threshold sweeps, budgets, Pareto.

Everything is FITTED on the hold-out; the test split only scores (its labels never reach a
fit). Inputs are ``ViewBundle``-like objects (``features``, ``logits``, ``labels``, and on the
test one ``gflops`` and ``names``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from clipfuse.cascade.cascade import Cascade
from clipfuse.cascade.costs import fill_costs
from clipfuse.cascade.subset import SubsetNLC
from clipfuse.cascade.threshold import ALL_STAGES, operating_points


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
    hold: Any,
    test: Any,
    *,
    budgets: list[float] | None = None,
    cascade_params: dict[str, Any] | None = None,
    subset_params: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """JSON-ready compute trade-offs of one hold-out draw, scored on test.

    Fits a cascade (``cascade_params``) and, per budget, a ``subset_nlc`` on ``hold``; returns
    the cascade's operating point on test (accuracy, mean cost actually spent per image), its
    prefix curve over 1..B backbones, its threshold sweep, the Pareto front of all of these
    points, and each budget's chosen subset with its test accuracy and cost.
    """
    names = list(test.names)
    cascade = Cascade(seed=seed, device=device).set_params(**(cascade_params or {}))
    fill_costs(cascade, list(test.gflops)).fit(hold.features, hold.logits, hold.labels)
    pred, cost, used = cascade.predict_with_cost(test.features, test.logits)
    y = test.labels.to(pred.device)
    prefix = prefix_points(cascade, test.features, test.logits, test.labels, names)
    sweep = threshold_points(cascade, test.features, test.logits, test.labels)
    subsets = []
    for budget in budgets or []:
        params = {**(subset_params or {}), "budget_gflops": budget}
        sub = fill_costs(
            SubsetNLC(seed=seed, device=device).set_params(**params), list(test.gflops)
        )
        sub.fit(hold.features, hold.logits, hold.labels)
        acc = float((sub.predict(test.features, test.logits) == y).float().mean())
        subsets.append({"budget": budget, "backbones": [names[b] for b in sub.subset_], "cost": sub.subset_cost_,
                        "test_accuracy": acc, "search": sub.search_})  # fmt: skip
    operating = CostPoint(
        "cascade",
        float(cost.mean()),
        float((pred == y).float().mean()),
        float(used.float().mean()),
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
    }
