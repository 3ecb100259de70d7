"""Fitting a saved ensemble: one combiner on one seeded hold-out draw of a train view."""

from __future__ import annotations

from typing import Any

from clipfuse.combiners._compose import build_combiner
from clipfuse.ensemble.saved import SavedEnsemble
from clipfuse.logits.bundle import ViewBundle


def fit_ensemble(
    train: ViewBundle,
    method: str = "nlc",
    *,
    shots: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    clamp: bool = False,
    device: str = "cpu",
) -> SavedEnsemble:
    """Draw the hold-out (``shots`` per class or a ``fraction``) from ``train``, fit ``method``
    on it and return the ensemble ready to ``save`` -- what ``clipfuse fit`` does."""
    hold = train.holdout(shots, fraction=fraction, seed=seed, clamp=clamp)
    combiner = build_combiner(method, params, seed=seed, gflops=train.gflops, device=device)
    combiner.fit(*hold.fusion_inputs())
    ensemble = SavedEnsemble.from_fitted(combiner, train, draw=hold.draw)
    return ensemble
