"""Compute-aware fusion: cheapest-first cascades and backbone subsets under a GFLOPs budget.

>>> from clipfuse.combiners import make_combiner
>>> cas = make_combiner("cascade", gflops=bundle.gflops, target_gflops=80).fit(f, z, y)
>>> pred, gflops_per_image, backbones_run = cas.predict_with_cost(f_test, z_test)
>>> sub = make_combiner("subset_nlc", gflops=bundle.gflops, budget_gflops=80).fit(f, z, y)
"""

from clipfuse.cascade.cascade import Cascade
from clipfuse.cascade.curves import (
    CostPoint,
    pareto_front,
    pareto_indices,
    prefix_points,
    threshold_points,
    tradeoff_report,
)
from clipfuse.cascade.subset import SubsetChoice, SubsetNLC, search_subset
from clipfuse.cascade.threshold import ALL_STAGES, threshold_for_accuracy, threshold_for_cost
from clipfuse.combiners.costs import cost_info, fill_costs, resolve_costs

__all__ = [
    "ALL_STAGES",
    "Cascade",
    "CostPoint",
    "SubsetChoice",
    "SubsetNLC",
    "cost_info",
    "fill_costs",
    "pareto_front",
    "pareto_indices",
    "prefix_points",
    "resolve_costs",
    "search_subset",
    "threshold_for_accuracy",
    "threshold_for_cost",
    "threshold_points",
    "tradeoff_report",
]
