"""The one result schema: every accuracy, gain and share a fraction (percent only when rendered).

A summary row (``EvaluationResult.summary()``, ``results.json``/``results.csv``, the rows of the
report's ``evaluation.json``) holds ``mean``, ``std``, ``worst``, ``ci_low``/``ci_high`` (top-1),
``gain``, ``worst_delta``, ``gain_vs_reference``, ``worst_vs_reference`` (differences of top-1)
and ``gain_relative``, ``oracle_gap_share`` (ratios), all as fractions: 0.0123 is 1.23 points.
Files written so carry ``"schema": SCHEMA`` (``results.json``) or ``"version": 2``
(``evaluation.json``). Files written before (``benchmarks/results/*.json``, old report folders)
are read through :func:`upgrade_rows`, the only place that knows the old percent keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SCHEMA = 2

# schema 1: these keys held percent (points); the value / 100 is schema 2's key on the right.
# results.json v1 used the suffixed names, evaluation.json v1 the plain ones (with mean/std
# already fractions there, so they are not listed).
_PERCENT_V1 = {
    "top1_mean": "mean",
    "top1_std": "std",
    "top1_worst": "worst",
    "top1_ci_low": "ci_low",
    "top1_ci_high": "ci_high",
    "gain_points": "gain",
    "gain_relative_pct": "gain_relative",
    "worst_delta_points": "worst_delta",
    "gain_vs_reference_points": "gain_vs_reference",
    "worst_vs_reference_points": "worst_vs_reference",
    "oracle_gap_share_pct": "oracle_gap_share",
    "gain_relative": "gain_relative",
    "worst_delta": "worst_delta",
    "gain_vs_reference": "gain_vs_reference",
    "worst_vs_reference": "worst_vs_reference",
    "oracle_gap_share": "oracle_gap_share",
}


def upgrade_rows(rows: Iterable[Mapping[str, Any]], schema: int | None) -> list[dict[str, Any]]:
    """Rows of a file written with ``schema`` (None or 1: percent, before the marker) as schema-2
    rows; schema-2 rows pass unchanged."""
    if schema == SCHEMA:
        return [dict(r) for r in rows]
    return [
        {
            _PERCENT_V1.get(k, k): v / 100 if k in _PERCENT_V1 and v is not None else v
            for k, v in r.items()
        }
        for r in rows
    ]


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The summary of a ``results.json``-style dict (``evaluate``, ``bench_fusion --out``) in
    schema 2, whichever schema wrote it."""
    return upgrade_rows(results["summary"], results.get("schema"))


def pct(value: float | None) -> float | None:
    """A fraction as percent (points) for display; None stays None."""
    return None if value is None else 100 * value
