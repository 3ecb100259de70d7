"""Robustness: accuracy of each backbone and each ensemble under perturbations (docs/method.md §5).

Ensembles are fitted once per seed on the *clean* train hold-out and then applied unchanged to
every perturbed test view, so the drop measures robustness, not re-fitting. Perturbed features
are extracted once and cached (the perturbation key is part of the store view).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clipfuse.data.dataset import ImageDataset
from clipfuse.evaluation.metrics import topk_accuracy
from clipfuse.extraction.engine import extract, view_name
from clipfuse.extraction.perturbations import Perturbation
from clipfuse.logits.bundle import ViewBundle, load_bundle
from clipfuse.protocol import fit_on_draw, score_on
from clipfuse.store import FeatureStore


def fit_on_clean(
    train: ViewBundle,
    methods: Sequence[str],
    shots: int | None,
    fraction: float | None,
    seeds: Sequence[int],
    device: str = "cpu",
) -> dict[str, list]:
    """{method: [fitted combiner per seed]} on clean hold-out draws, through the protocol (so a
    method that uses unlabelled images gets the rest of train, as in ``evaluate`` and ``fit``)."""
    fitted: dict[str, list] = {m: [] for m in methods}
    for seed in seeds:
        hold = train.holdout(shots, fraction=fraction, seed=seed)
        for method in methods:
            run = fit_on_draw(method, train, hold, seed=seed, device=device)
            fitted[method].append(run.combiner)
    return fitted


def score_view(bundle: ViewBundle, fitted: dict[str, list]) -> dict[str, list[float]]:
    """{model: [top-1 per seed]} for every single backbone (one value) and fitted ensemble."""
    scores: dict[str, list[float]] = {
        n: [topk_accuracy(bundle.logits[b], bundle.labels)] for b, n in enumerate(bundle.names)
    }
    for method, combiners in fitted.items():
        scores[method] = [score_on(c, bundle)[0] for c in combiners]
    return scores


def robustness_study(
    store: FeatureStore,
    backbones: list,
    train: ViewBundle,
    test_dataset: ImageDataset,
    perturbations: Sequence[Perturbation],
    methods: Sequence[str],
    *,
    shots: int | None = 1,
    fraction: float | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Records of {perturbation, severity, method, accuracy (mean over seeds), std, drop}, all
    fractions (``evaluation.schema``; the CLI prints the drop in points)."""
    specs = [b.info.spec for b in backbones]

    def view(perturbation: Perturbation | None = None) -> ViewBundle:
        """The test view, clean or perturbed: extracted once (cached), then loaded."""
        extract(
            backbones,
            test_dataset,
            store,
            batch_size=batch_size,
            num_workers=num_workers,
            perturbation=perturbation,
            progress=progress,
            threads=threads,
        )
        return load_bundle(
            store,
            view_name(test_dataset, None if perturbation is None else perturbation.key),
            backbones=specs,
            classnames=test_dataset.classnames,
            templates=test_dataset.templates,
        )

    clean = view()
    fitted = fit_on_clean(train, methods, shots, fraction, seeds)
    clean_scores = score_view(clean, fitted)
    records: list[dict[str, Any]] = []

    def add(name: str, severity: int, scores: dict[str, list[float]]) -> None:
        for model, values in scores.items():
            mean = float(np.mean(values))
            records.append(
                {
                    "dataset": test_dataset.name,
                    "perturbation": name,
                    "severity": severity,
                    "method": model,
                    "kind": "ensemble" if model in fitted else "single",
                    "accuracy": mean,
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "drop": float(np.mean(clean_scores[model])) - mean,
                    "n_seeds": len(values),
                }
            )

    add("clean", 0, clean_scores)
    for perturbation in perturbations:
        add(perturbation.name, perturbation.severity, score_view(view(perturbation), fitted))
    return {
        "records": records,
        "protocol": {
            "methods": list(methods),
            "shots": shots,
            "fraction": fraction,
            "seeds": list(seeds),
            "fitted_on": train.view,
            "test_view": clean.view,
            "backbones": specs,
            "perturbations": [p.key for p in perturbations],
            "note": "ensembles fitted on the clean hold-out, applied unchanged to perturbed views",
        },
    }
