"""Run every method over label budgets and seeds on cached fusion inputs; summarise honestly.

For each (budget, seed): draw the hold-out from the train view, fit each method on it, score it
on the test view. The baseline for gains is the single backbone chosen on that same hold-out
(docs/method.md §5); the backbone that is best on test is shown only as a reference row, and the
oracle only as an upper bound. Nothing is selected, stopped or tuned on test.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm import tqdm

from clipfuse.cascade.costs import cost_info
from clipfuse.combiners import BestSingle, oracle_accuracy
from clipfuse.combiners._compose import build_combiner, fit_inputs
from clipfuse.combiners.registry import expand_methods, list_combiners
from clipfuse.errors import FitError
from clipfuse.evaluation.metrics import topk_accuracy
from clipfuse.evaluation.records import MIN_RELATIVE_BASELINE, EvaluationResult, RunRecord, _row
from clipfuse.evaluation.tables import format_markdown
from clipfuse.logits.bundle import ViewBundle

__all__ = [
    "CORE_METHODS",
    "MIN_RELATIVE_BASELINE",
    "EvaluationResult",
    "RunRecord",
    "_row",
    "evaluate_methods",
    "expand_methods",
    "format_markdown",
]

PREDICT_CHUNK = 4096


CORE_METHODS = list_combiners(group="core")  # static ensembles, calibrated mean, SL, MoE, NLC


def _cost_info(combiner, test: ViewBundle) -> dict[str, Any]:
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


def _correct(combiner, test: ViewBundle) -> np.ndarray:
    """(N,) bool: which evaluation images the fitted combiner gets right, predicted in chunks
    like ``Combiner.score`` (transductive combiners see the whole set at once)."""
    n = test.labels.numel()
    chunk = n if combiner.transductive else PREDICT_CHUNK
    parts = []
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        pred = combiner.predict([f[sl] for f in test.features], test.logits[:, sl]).cpu()
        parts.append((pred == test.labels[sl].cpu()).numpy())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def evaluate_methods(
    train: ViewBundle,
    test: ViewBundle,
    methods: list[str],
    budgets: list[tuple[int | None, float | None]],
    seeds: list[int],
    *,
    dataset: str,
    method_params: dict[str, dict[str, Any]] | None = None,
    clamp: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> EvaluationResult:
    """Fit each method on each hold-out draw and score it on test."""
    if train.fingerprints != test.fingerprints:
        raise FitError(
            "train and test views hold different backbones; extract both splits with the same --backbone list"
        )
    if len(train.classnames) != len(test.classnames):
        raise FitError(
            f"class-count mismatch: train has {len(train.classnames)} classes, test {len(test.classnames)}"
        )
    methods = expand_methods(methods)
    method_params = method_params or {}
    singles = {
        name: topk_accuracy(test.logits[b], test.labels) for b, name in enumerate(test.names)
    }
    single_correct = {
        name: (test.logits[b].argmax(-1) == test.labels).numpy()
        for b, name in enumerate(test.names)
    }
    result = EvaluationResult(
        dataset=dataset,
        train_view=train.view,
        test_view=test.view,
        backbones=list(test.names),
        singles=singles,
        oracle=oracle_accuracy(test.logits, test.labels),
        records=[],
        draws=[],
        test_labels=test.labels,
        single_correct=single_correct,
        config={
            "methods": methods,
            "budgets": [{"shots": s, "fraction": f} for s, f in budgets],
            "seeds": list(seeds),
            "method_params": method_params,
            "device": device,
            "specs": test.specs,
            "classnames": list(test.classnames),
            "gflops": {n: g for n, g in zip(test.names, test.gflops) if g is not None},
            "train_samples": int(train.labels.numel()),
            "test_samples": int(test.labels.numel()),
            "baseline": "single backbone with the best hold-out accuracy (ties: lower NLL), per draw",
            "std": "sample standard deviation over seeds (ddof=1)",
        },
    )
    bar = tqdm(
        total=len(budgets) * len(seeds) * len(methods),
        desc="evaluate",
        unit="fit",
        disable=not progress,
    )
    for shots, fraction in budgets:
        for seed in seeds:
            hold = train.holdout(shots, fraction=fraction, seed=seed, clamp=clamp)
            draw = hold.draw
            result.draws.append(draw)
            # the same rule as the best_single method (ties on tiny hold-outs go to the lower
            # NLL), so the baseline never depends on the order the backbones are listed in
            chosen = BestSingle().fit(None, hold.logits, hold.labels).chosen_
            base_name, base_top1 = test.names[chosen], singles[test.names[chosen]]
            for method in methods:
                combiner = build_combiner(
                    method, method_params.get(method), seed=seed, gflops=train.gflops, device=device
                )  # cascades/subsets get the store's GFLOPs
                *fit_args, fit_info = fit_inputs(combiner, train, hold)
                t0 = time.perf_counter()
                combiner.fit(*fit_args)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                correct = _correct(combiner, test)
                top1 = float(correct.mean())
                predict_s = time.perf_counter() - t0
                chosen_b = combiner.chosen_backbone()
                info = {} if chosen_b is None else {"chosen": test.names[chosen_b]}
                info.update(_cost_info(combiner, test))
                info.update(fit_info)
                info.update(combiner.fit_notes())  # fallbacks and safety-rule choices, recorded
                if method == "nlc" and "nlc" not in result.temperatures:
                    result.temperatures["nlc"] = combiner.predict_temperatures(test.features).cpu()
                result.records.append(
                    RunRecord(
                        method,
                        draw.budget,
                        seed,
                        draw.num_labels,
                        top1,
                        base_name,
                        base_top1,
                        fit_s,
                        predict_s,
                        info,
                        correct,
                    )
                )
                bar.update(1)
    bar.close()
    return result
