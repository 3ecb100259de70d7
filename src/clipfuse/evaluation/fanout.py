"""Evaluation fanned out over an engine: one job per (dataset, budget, seed) draw.

Each draw of `evaluate_methods` is independent of the others (its own hold-out, fresh combiners
seeded by the draw's seed), so running each as a separate `evaluate_methods` call for one budget
and one seed, anywhere, and concatenating the records in the serial loop's order (budget, then
seed) gives the serial result. Every job runs with the driver's torch thread count, because
reductions over a different number of threads can round differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from clipfuse.engines.base import Engine
from clipfuse.evaluation.records import EvaluationResult
from clipfuse.evaluation.runner import evaluate_methods
from clipfuse.logits.bundle import ViewBundle

Budget = tuple[int | None, float | None]


@dataclass(frozen=True)
class EvalJob:
    """One dataset to evaluate: its train (hold-out source) and test views."""

    train: ViewBundle
    test: ViewBundle
    dataset: str


def evaluate_grid(
    engine: Engine,
    jobs: Sequence[EvalJob],
    methods: list[str],
    budgets: list[Budget],
    seeds: list[int],
    **options: Any,
) -> list[EvaluationResult]:
    """`evaluate_methods` for every job, its (budget, seed) draws run as `engine` jobs.

    `options` are `evaluate_methods`' keyword arguments (method_params, clamp, device); results
    equal the serial ones except for the measured fit/predict seconds."""
    items = [(j, budget, seed) for j in range(len(jobs)) for budget in budgets for seed in seeds]
    shared = (list(jobs), methods, {**options, "progress": False}, torch.get_num_threads())
    parts = engine.map(_one_draw, items, shared=shared)
    return [
        merge_draws([p for (j, _, _), p in zip(items, parts) if j == k], budgets, seeds)
        for k in range(len(jobs))
    ]


def evaluate_with(
    engine: Engine | None,
    train: ViewBundle,
    test: ViewBundle,
    methods: list[str],
    budgets: list[Budget],
    seeds: list[int],
    *,
    dataset: str,
    progress: bool = True,
    **options: Any,
) -> EvaluationResult:
    """One dataset: serial `evaluate_methods` when `engine` is None, else fanned out."""
    if engine is None:
        return evaluate_methods(
            train, test, methods, budgets, seeds, dataset=dataset, progress=progress, **options
        )
    return evaluate_grid(
        engine, [EvalJob(train, test, dataset)], methods, budgets, seeds, **options
    )[0]


def merge_draws(
    parts: Sequence[EvaluationResult], budgets: list[Budget], seeds: list[int]
) -> EvaluationResult:
    """Single-draw results (in budget-then-seed order) -> the result of the whole grid."""
    first = parts[0]
    return replace(
        first,
        records=[r for p in parts for r in p.records],
        draws=[d for p in parts for d in p.draws],
        config={
            **first.config,
            "budgets": [{"shots": s, "fraction": f} for s, f in budgets],
            "seeds": list(seeds),
        },
    )


def _one_draw(shared, item) -> EvaluationResult:
    jobs, methods, options, threads = shared
    j, budget, seed = item
    torch.set_num_threads(threads)
    job = jobs[j]
    return evaluate_methods(
        job.train, job.test, methods, [budget], [seed], dataset=job.dataset, **options
    )
