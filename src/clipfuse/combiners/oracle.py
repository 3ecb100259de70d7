"""Oracle: an example counts as correct if at least one backbone gets it right.

An upper bound for analysis, not a method -- it needs the labels at prediction time, so it is
a pair of functions rather than a Combiner.
"""

from __future__ import annotations

import torch

from clipfuse._validation import ArrayLike, check_labels, check_logits, to_tensor


def oracle_correct(logits: ArrayLike, y: ArrayLike) -> torch.Tensor:
    """(N,) bool: does any backbone's argmax equal the label? ``logits`` is (B, N, C)."""
    _, n, c = check_logits(logits)
    check_labels(y, n, c)
    device = logits.device if isinstance(logits, torch.Tensor) else "cpu"
    pred = to_tensor(logits, torch.float32, device).argmax(dim=-1)  # (B, N)
    return (pred == to_tensor(y, torch.int64, device)).any(dim=0)


def oracle_accuracy(logits: ArrayLike, y: ArrayLike) -> float:
    """Fraction of examples at least one backbone classifies correctly."""
    return float(oracle_correct(logits, y).float().mean())
