"""Per-backbone inference cost: GFLOPs per image (or any additive per-image cost, e.g. ms).

Fusion inputs carry no costs, so combiners that trade accuracy for compute take them as a
``gflops`` parameter; ``fill_costs`` sets it from ``ViewBundle.gflops`` (the store records
each backbone's image-tower GFLOPs at extraction). Without costs every backbone costs 1, i.e.
budgets count backbones. The controller MLP's own cost (~2 MFLOPs) is not counted.

It sits below ``cascade/`` (which charges stages with it) and ``clipfuse.protocol`` (which records
every method's compute with ``cost_info``), so the protocol does not import the cascade package
and the cascade code's tradeoff curves can run through the protocol without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.errors import FitError

UNIT_COST = "backbones"
GFLOPS = "GFLOPs"


def resolve_costs(gflops: Sequence[float] | None, num_backbones: int) -> tuple[list[float], str]:
    """(cost per backbone, unit): the given GFLOPs, or 1 per backbone when none are given."""
    if gflops is None:
        return [1.0] * num_backbones, UNIT_COST
    if len(gflops) != num_backbones:
        raise FitError(f"got {len(gflops)} backbone costs (gflops) for {num_backbones} backbones")
    costs = [float(g) for g in gflops]
    if min(costs) <= 0:
        raise FitError(f"backbone costs (gflops) must be > 0; got {costs}")
    return costs, GFLOPS


def fill_costs(combiner: Combiner, gflops: Sequence[float | None]) -> Combiner:
    """Give a cost-aware combiner the backbones' GFLOPs unless the user set them (or one is unknown)."""
    params = combiner.get_params()
    if "gflops" in params and params["gflops"] is None and gflops and None not in gflops:
        combiner.set_params(gflops=[float(g) for g in gflops])  # type: ignore[arg-type]
    return combiner


def cost_info(
    combiner: Combiner,
    features: Sequence[Any],
    logits: Any,
    gflops: Sequence[float | None],
    names: Sequence[str],
) -> dict[str, Any]:
    """Compute one fitted method spends per test image (mean GFLOPs, backbones run).

    Cascades report what they actually spent (``predict_with_cost``); subsets count their
    chosen backbones; every other combiner runs all backbones. ``None`` when a cost is unknown.
    """
    known = bool(gflops) and None not in gflops
    if combiner.supports_staged:
        _, cost, used = combiner.predict_with_cost(features, logits)
        in_gflops = combiner.cost_unit_ == GFLOPS
        return {
            "backbones_per_image": float(used.float().mean()),
            "gflops_per_image": float(cost.mean()) if in_gflops else None,
        }
    required = combiner.required_backbones()
    info = {"backbones_per_image": float(len(required))}
    info["gflops_per_image"] = sum(float(gflops[b]) for b in required) if known else None
    if combiner.selects_backbones:
        info["backbones"] = [names[b] for b in required]
    return info


def stage_costs(costs: Sequence[float], order: Sequence[int]) -> torch.Tensor:
    """(P,) cumulative cost of running the first p+1 backbones of ``order``."""
    return torch.cumsum(torch.tensor([float(costs[b]) for b in order], dtype=torch.float64), 0)
