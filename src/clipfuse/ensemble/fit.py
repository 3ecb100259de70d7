"""Fitting a saved ensemble: one combiner on one seeded hold-out draw of a train view."""

from __future__ import annotations

from typing import Any

from clipfuse.combiners.registry import RECOMMENDED, combiner_class
from clipfuse.ensemble.saved import SavedEnsemble, check_transductive
from clipfuse.logits.bundle import ViewBundle
from clipfuse.protocol import fit_on_draw


def fit_ensemble(
    train: ViewBundle,
    method: str | None = None,
    *,
    shots: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    clamp: bool = False,
    device: str = "cpu",
    allow_transductive: bool = False,
) -> SavedEnsemble:
    """Draw the hold-out (``shots`` per class or a ``fraction``) from ``train``, fit ``method``
    on it and return the ensemble ready to ``save`` -- what ``clipfuse fit`` does. Without a
    ``method``, the recommended one (``RECOMMENDED``); a combiner that can use unlabelled images
    also gets the rest of ``train`` without labels (recorded as ``training["unlabelled"]``).
    A transductive method (``transclip``) needs ``allow_transductive=True``, recorded in the file."""
    method = method or RECOMMENDED
    hold = train.holdout(shots, fraction=fraction, seed=seed, clamp=clamp)
    check_transductive(combiner_class(method)(), allow_transductive)
    run = fit_on_draw(method, train, hold, params=params, seed=seed, device=device)
    ensemble = SavedEnsemble.from_fitted(
        run.combiner, train, draw=hold.draw, allow_transductive=allow_transductive
    )
    ensemble.training.update(run.info)  # "unlabelled": train rows given without their labels
    return ensemble
