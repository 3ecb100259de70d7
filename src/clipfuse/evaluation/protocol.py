"""Fusion-protocol helpers for the runner: reference and oracle-gap columns.

Kept apart from ``runner.py`` so the runner only gains small hooks (issue 11).
"""

from __future__ import annotations

from typing import Any


def add_reference_columns(rows: list[dict[str, Any]], reference: float, oracle: float) -> None:
    """Per method row: gain vs the backbone best on the evaluated set (a reference, not a method),
    its worst seed's gain, and the share of the oracle gap captured (points / percent of top-1)."""
    ref, orc = 100 * reference, 100 * oracle
    for row in rows:
        if row["kind"] != "method":
            continue
        gain = row["top1_mean"] - ref
        row["gain_vs_reference_points"] = gain
        row["worst_vs_reference_points"] = row["top1_worst"] - ref
        row["oracle_gap_share_pct"] = 100 * gain / (orc - ref) if orc > ref else None
