"""Prediction-level complementarity: who is right, who agrees, who fails together.

Everything here works on hard predictions ``preds`` of shape (B, N) and labels ``y`` of
shape (N,), so it is cheap (O(B^2 N) at most) and needs no logits in memory.
"""

from __future__ import annotations

import torch

from clipfuse.analysis._arrays import mean_pairwise
from clipfuse.errors import DataError

# Backbone membership patterns are packed into int64 bit masks.
MAX_BACKBONES = 62


def correctness(preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: whether backbone b predicts sample n correctly."""
    if preds.ndim != 2 or preds.shape[1] != y.shape[0]:
        raise DataError(f"predictions {tuple(preds.shape)} do not match labels {tuple(y.shape)}")
    return preds == y.unsqueeze(0)


def per_backbone_accuracy(correct: torch.Tensor) -> torch.Tensor:
    """(B,) float64 accuracy of each backbone."""
    return correct.to(torch.float64).mean(dim=1)


def oracle_from_correct(correct: torch.Tensor) -> float:
    """Fraction of samples that at least one backbone gets right (an upper bound, not a method)."""
    return float(correct.any(dim=0).to(torch.float64).mean())


def agreement_matrix(preds: torch.Tensor) -> torch.Tensor:
    """(B, B) float64: fraction of samples on which two backbones predict the same class."""
    b, n = preds.shape
    out = torch.empty(b, b, dtype=torch.float64)
    for i in range(b):
        # One row at a time keeps memory at O(B N) instead of O(B^2 N).
        out[i] = (preds == preds[i]).sum(dim=1).to(torch.float64) / n
    return out


def error_overlap_matrix(correct: torch.Tensor) -> torch.Tensor:
    """(B, B) float64: fraction of samples that both backbones get wrong (diagonal = error rate)."""
    wrong = (~correct).to(torch.float64)
    return wrong @ wrong.T / correct.shape[1]


def unique_correct(correct: torch.Tensor) -> list[torch.Tensor]:
    """Per backbone, the sample indices that it alone gets right."""
    alone = correct & (correct.sum(dim=0) == 1).unsqueeze(0)
    return [torch.nonzero(row).reshape(-1) for row in alone]


def correct_set_intersections(correct: torch.Tensor) -> list[tuple[tuple[bool, ...], int]]:
    """UpSet-style counts: samples per exact pattern of which backbones are correct.

    Returns ``(pattern, count)`` pairs, pattern[b] True when backbone b is right, sorted by
    count (descending) then pattern. Only patterns that occur are listed; counts sum to N.
    """
    b = correct.shape[0]
    if b > MAX_BACKBONES:
        raise DataError(f"intersection patterns support at most {MAX_BACKBONES} backbones, got {b}")
    weights = torch.ones(b, dtype=torch.int64) << torch.arange(b, dtype=torch.int64)
    codes = (correct.to(torch.int64) * weights.unsqueeze(1)).sum(dim=0)
    values, counts = torch.unique(codes, return_counts=True)
    rows = [
        (tuple(bool((int(code) >> i) & 1) for i in range(b)), int(count))
        for code, count in zip(values.tolist(), counts.tolist())
    ]
    rows.sort(key=lambda r: (-r[1], tuple(not v for v in r[0])))
    return rows


def mean_pairwise_disagreement(agreement: torch.Tensor) -> float:
    """Mean over backbone pairs i < j of the fraction of samples where they disagree."""
    return mean_pairwise(1.0 - agreement)
