"""Run every method over label budgets and seeds on cached fusion inputs; summarise honestly.

For each (budget, seed): draw the hold-out from the train view, fit each method on it, score it
on the test view. The baseline for gains is the single backbone chosen on that same hold-out
(docs/method.md §5); the backbone that is best on test is shown only as a reference row, and the
oracle only as an upper bound. Nothing is selected, stopped or tuned on test.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from clipfuse.combiners import BestSingle, oracle_accuracy
from clipfuse.combiners.registry import expand_methods, list_combiners
from clipfuse.errors import FitError
from clipfuse.evaluation.metrics import topk_accuracy
from clipfuse.evaluation.records import EvaluationResult, RunRecord
from clipfuse.logits.bundle import ViewBundle
from clipfuse.protocol import correct_on, fit_on_draw, run_notes

CORE_METHODS = list_combiners(group="core")  # static ensembles, calibrated mean, SL, MoE, NLC


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
            "templates": list(test.templates),
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
                run = fit_on_draw(
                    method, train, hold, params=method_params.get(method), seed=seed, device=device
                )
                combiner = run.combiner
                correct, predict_s = correct_on(combiner, test)
                top1 = float(correct.mean())
                info = run_notes(run, test)
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
                        run.fit_seconds,
                        predict_s,
                        info,
                        correct,
                    )
                )
                bar.update(1)
    bar.close()
    return result
