"""The evaluation protocol, written once: draw -> fit inputs -> fit -> score -> costs -> notes.

``evaluate`` (``evaluation.runner``), ``fit`` (``ensemble.fit``), the robustness study and
``tradeoffs`` (``cascade.curves.tradeoff_report``) all go through these functions, and ``predict``
(``ensemble.predict``) scores by the same whole-set rule (``scores_whole_set``), so every caller gives a method the same rows: the labelled hold-out drawn
from train, plus -- for a combiner that declares ``uses_unlabelled`` -- every other train image
with ``y = -1`` (its label never passed), and records the same notes (before issue 22 the
robustness copy gave no unlabelled rows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clipfuse.combiners._compose import build_combiner
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.costs import cost_info
from clipfuse.errors import ClipfuseError
from clipfuse.logits.bundle import ViewBundle

PREDICT_CHUNK = 4096  # test rows per cost computation


def fit_inputs(
    combiner: Combiner, train: ViewBundle, hold: ViewBundle
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(features, logits, y, info) to fit ``combiner`` on for one hold-out draw.

    Combiners with ``uses_unlabelled`` also get every other train image with ``y = -1``;
    ``info["unlabelled"]`` records how many, so tables show it.
    """
    if not combiner.uses_unlabelled:
        return hold.features, hold.logits, hold.labels, {}
    hold_rows = np.searchsorted(train.indices, hold.draw.positions)
    rest = np.setdiff1d(np.arange(train.labels.numel()), hold_rows)
    if rest.size == 0:
        return hold.features, hold.logits, hold.labels, {"unlabelled": 0}
    other = train.select(rest)
    feats = [torch.cat([a, b]) for a, b in zip(hold.features, other.features)]
    logits = torch.cat([hold.logits, other.logits], dim=1)
    y = torch.cat([hold.labels, torch.full_like(other.labels, -1)])
    return feats, logits, y, {"unlabelled": int(rest.size)}


@dataclass
class FittedRun:
    """One method fitted on one draw: the combiner, its fit time and what its inputs were."""

    combiner: Combiner
    fit_seconds: float
    info: dict[str, Any] = field(default_factory=dict)  # "unlabelled": train rows without labels


def fit_on_draw(
    method: str,
    train: ViewBundle,
    hold: ViewBundle,
    *,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> FittedRun:
    """Build ``method`` (seeded; cost-aware ones get the store's GFLOPs) and fit it on ``hold``
    plus, where it can use them, the rest of ``train`` unlabelled."""
    combiner = build_combiner(method, params, seed=seed, gflops=train.gflops, device=device)
    *args, info = fit_inputs(combiner, train, hold)
    start = time.perf_counter()
    combiner.fit(*args)
    return FittedRun(combiner, time.perf_counter() - start, info)


def scores_whole_set(combiner: Combiner, *, allowed: bool = True) -> bool:
    """Is ``combiner`` given the whole evaluated set at once rather than chunk by chunk? A
    transductive one is (an image's answer depends on the others given), and only where the
    caller opted in: ``predict`` passes its ``transductive`` flag, ``evaluate`` always scores it."""
    if combiner.transductive and not allowed:
        raise ClipfuseError(
            f"{combiner.name} is transductive: each answer depends on the other images "
            "given; pass transductive=True (CLI: --transductive) to score them all together"
        )
    return combiner.transductive


def score_on(combiner: Combiner, test: ViewBundle) -> tuple[float, float]:
    """(top-1 on ``test``, seconds): chunked rows, a transductive combiner on the whole set."""
    correct, seconds = correct_on(combiner, test)
    return float(correct.mean()) if correct.size else 0.0, seconds


def correct_on(combiner: Combiner, test: ViewBundle) -> tuple[np.ndarray, float]:
    """((N,) bool: which evaluation images the fitted combiner gets right, seconds), predicted in
    chunks like ``Combiner.score`` (a transductive combiner sees the whole set at once); the
    per-image vector is what the bootstrap interval over evaluation images resamples."""
    start = time.perf_counter()
    n = test.labels.numel()
    chunk = n if scores_whole_set(combiner) else PREDICT_CHUNK
    parts = []
    for lo in range(0, n, max(chunk, 1)):
        sl = slice(lo, min(n, lo + chunk))
        pred = combiner.predict([f[sl] for f in test.features], test.logits[:, sl])
        parts.append((torch.as_tensor(pred).cpu() == test.labels[sl].cpu()).numpy())
    correct = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    return correct, time.perf_counter() - start


def cost_notes(combiner: Combiner, test: ViewBundle) -> dict[str, Any]:
    """Compute spent per test image (cascades: what they actually ran), chunked like top-1."""
    n = test.labels.numel()
    parts = []
    for start in range(0, n, PREDICT_CHUNK):
        sl = slice(start, min(n, start + PREDICT_CHUNK))
        part = cost_info(
            combiner, [f[sl] for f in test.features], test.logits[:, sl], test.gflops, test.names
        )
        parts.append((sl.stop - sl.start, part))
    info = dict(parts[0][1]) if parts else {}
    for key in ("backbones_per_image", "gflops_per_image"):
        if parts and parts[0][1].get(key) is not None:
            info[key] = sum(m * p[key] for m, p in parts) / max(n, 1)
    return info


def run_notes(run: FittedRun, test: ViewBundle) -> dict[str, Any]:
    """What a results record shows beside top-1: the backbone chosen, costs, unlabelled rows
    and the fit's own notes (fallbacks, a safety rule's choice, transductive)."""
    chosen = run.combiner.chosen_backbone()
    notes: dict[str, Any] = {} if chosen is None else {"chosen": test.names[chosen]}
    notes.update(cost_notes(run.combiner, test))
    notes.update(run.info)
    notes.update(run.combiner.fit_notes())
    return notes
