"""Evaluation: metrics, hold-out protocol, method runs and result tables.

Names load on first use: `clipfuse zeroshot` needs only `evaluation.zeroshot_eval`, and the
result writers pull in matplotlib (seconds of a command that should answer from the cache).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "HoldoutDraw": "clipfuse.data.holdout",
    "draw_holdout": "clipfuse.data.holdout",
    "parse_budgets": "clipfuse.data.holdout",
    "write_results": "clipfuse.evaluation.outputs",
    "EvaluationResult": "clipfuse.evaluation.records",
    "RunRecord": "clipfuse.evaluation.records",
    "evaluate_methods": "clipfuse.evaluation.runner",
}

__all__ = [
    "EvaluationResult",
    "HoldoutDraw",
    "RunRecord",
    "draw_holdout",
    "evaluate_methods",
    "parse_budgets",
    "write_results",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'clipfuse.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from clipfuse.data.holdout import HoldoutDraw, draw_holdout, parse_budgets
    from clipfuse.evaluation.outputs import write_results
    from clipfuse.evaluation.records import EvaluationResult, RunRecord
    from clipfuse.evaluation.runner import evaluate_methods
