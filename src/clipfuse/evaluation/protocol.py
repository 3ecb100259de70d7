"""Fusion-protocol helpers for the runner: unlabelled fit inputs and reference/oracle-gap columns.

Kept apart from ``runner.py`` so the runner only gains small hooks (issue 11).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clipfuse.logits.bundle import ViewBundle


def fit_inputs(
    combiner, train: ViewBundle, hold: ViewBundle, hold_rows: np.ndarray
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(features, logits, y, info) to fit ``combiner`` on for one hold-out draw.

    Combiners with ``uses_unlabelled`` also get every other train image with ``y = -1``
    (its label is never passed); ``info["unlabelled"]`` records how many, so tables show it.
    """
    if not getattr(combiner, "uses_unlabelled", False):
        return hold.features, hold.logits, hold.labels, {}
    rest = np.setdiff1d(np.arange(train.labels.numel()), hold_rows)
    if rest.size == 0:
        return hold.features, hold.logits, hold.labels, {"unlabelled": 0}
    other = train.select(rest)
    feats = [torch.cat([a, b]) for a, b in zip(hold.features, other.features)]
    logits = torch.cat([hold.logits, other.logits], dim=1)
    y = torch.cat([hold.labels, torch.full_like(other.labels, -1)])
    return feats, logits, y, {"unlabelled": int(rest.size)}


def add_reference_columns(rows: list[dict[str, Any]], reference: float, oracle: float) -> None:
    """Per method row: gain vs the backbone best on the evaluated set (a reference, not a method)
    and the share of the oracle gap captured; both in points/percent of the mean top-1."""
    ref, orc = 100 * reference, 100 * oracle
    for row in rows:
        if row["kind"] != "method":
            continue
        gain = row["top1_mean"] - ref
        row["gain_vs_reference_points"] = gain
        row["oracle_gap_share_pct"] = 100 * gain / (orc - ref) if orc > ref else None


def fit_notes(combiner) -> dict[str, Any]:
    """What a fitted combiner decided that a results table must show: a fallback it took
    (e.g. no unlabelled rows, too few labels for cross-validation) and the safety rule's choice."""
    notes: dict[str, Any] = {}
    for attr in ("fallback_", "choice_", "cv_nll_fusion_", "cv_nll_single_"):
        value = getattr(combiner, attr, None)
        if value is not None:
            notes[attr.rstrip("_")] = value
    return notes
