"""Evaluation: metrics, hold-out protocol, method runs and result tables."""

from clipfuse.data.holdout import HoldoutDraw, draw_holdout, parse_budgets
from clipfuse.evaluation.outputs import write_results
from clipfuse.evaluation.records import EvaluationResult, RunRecord
from clipfuse.evaluation.runner import evaluate_methods

__all__ = [
    "EvaluationResult",
    "HoldoutDraw",
    "RunRecord",
    "draw_holdout",
    "evaluate_methods",
    "parse_budgets",
    "write_results",
]
