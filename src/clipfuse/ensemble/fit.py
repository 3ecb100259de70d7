"""Fitting a saved ensemble: one combiner on one seeded hold-out draw of a train view."""

from __future__ import annotations

from typing import Any

import torch

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


def describe_fit(ensemble: SavedEnsemble) -> list[str]:
    """What `clipfuse fit` chose and learned, in a few lines a person reads: the data it saw, the
    decisions recorded in ``fit_notes()`` (a safety rule's choice, a fallback) and the learned
    weight of each backbone where the method has one weight per backbone."""
    combiner, t = ensemble.combiner, ensemble.training
    names = [b["name"] for b in ensemble.backbones]
    seen = f"{t.get('num_labels', '?')} labels ({t.get('budget', '?')}, seed {t.get('seed', '?')})"
    if t.get("unlabelled"):
        seen += f" + {t['unlabelled']} unlabelled images"
    lines = [f"{combiner.name}: fitted on {seen} of {t.get('view', '?')}"]
    for key, value in combiner.fit_notes().items():
        lines.append(f"  {key}: {round(value, 4) if isinstance(value, float) else value}")
    chosen = combiner.chosen_backbone()
    weights = getattr(combiner, "weights_", None)
    if chosen is not None:
        lines.append(f"  uses one backbone: {names[chosen]}")
    elif isinstance(weights, torch.Tensor) and weights.ndim == 1 and len(weights) == len(names):
        share = weights.abs() / weights.abs().sum().clamp_min(1e-12)
        pairs = ", ".join(f"{n} {float(s):.2f}" for n, s in zip(names, share))
        lines.append(
            f"  weight share per backbone: {pairs} (overall scale {float(weights.sum()):.2f})"
        )
    if combiner.has_temperatures:
        lines.append("  per-image temperatures from a controller over all backbones' features")
    return lines
