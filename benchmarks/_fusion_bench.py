"""Shared pieces of the fusion benchmarks (bench_fusion, bench_zs_probe, bench_controllers): the
fit-time world of issue 11's target and the demo-protocol "vs reference" table."""

from __future__ import annotations

import time
from typing import Any

# 1,000 classes x 9 backbones x 1 shot, feature widths of nine OpenAI CLIP image towers.
FIT_TIME_DIMS = (1024, 512, 640, 768, 1024, 512, 512, 768, 768)


def time_fits(
    names: list[str],
    shots: int = 1,
    num_classes: int = 1000,
    num_backbones: int = 9,
    useless_zero_shot: bool = False,
) -> None:
    """Fit each combiner once on a synthetic fit-time world (default: issue 11's, 1,000 classes
    x 9 backbones x 1 shot; issue 21 adds 16 shots, and 10 classes x 4 backbones) and print
    its wall time. ``useless_zero_shot``: every zero-shot logit points at the next class, so
    ``auto``'s CV prefers a head and its time guard is what keeps the fit short."""
    from synthetic import SyntheticWorld  # tests/synthetic.py

    from clipfuse.combiners import make_combiner

    world = SyntheticWorld(
        num_backbones=num_backbones, num_classes=num_classes,
        feature_dims=FIT_TIME_DIMS[:num_backbones], competent_margin=0.1, seed=0,
    )  # fmt: skip
    train = world.sample(shots, seed=0)
    logits = train.logits.roll(1, dims=-1) if useless_zero_shot else train.logits
    for name in names:
        start = time.perf_counter()
        model = make_combiner(name).fit(train.features, logits, train.y)
        elapsed = time.perf_counter() - start
        notes = model.fit_notes()
        extra = f" (chose {notes['auto_choice']})" if "auto_choice" in notes else ""
        extra += "".join(f"; {k}: {v}" for k, v in notes.get("auto_dropped", {}).items())
        world_name = "useless zero-shot, " if useless_zero_shot else ""
        print(f"fit {name} at {world_name}{num_classes:,} classes x {num_backbones} backbones x "
              f"{shots} shot: {elapsed:.2f} s{extra}", flush=True)  # fmt: skip


def demo_table(
    store: str,
    methods: list[str],
    shots: list[int],
    seeds: list[int],
    method_params: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Mean and worst seed vs the reference, per method and budget, on the demo protocol."""
    from bench_fusion import views

    from clipfuse.evaluation.runner import evaluate_methods

    budgets = [(k, None) for k in shots]
    for name in ("cifar10", "fashion-mnist"):
        pool, held = views("demo", name, store, progress=True)
        result = evaluate_methods(
            pool, held, methods, budgets, seeds, dataset=name, progress=True,
            method_params=method_params,
        )  # fmt: skip
        ref = max(result.singles.values())
        print(f"\n## {name} (demo): reference {100 * ref:.2f}, oracle {100 * result.oracle:.2f}")
        print("| method | shots | mean vs ref | worst seed vs ref |")
        print("|---|---|---|---|")
        for r in result.summary():
            if r["kind"] == "method":
                print(f"| {r['method']} | {r['budget']} | {100 * r['gain_vs_reference']:+.2f} | "
                      f"{100 * r['worst_vs_reference']:+.2f} |")  # fmt: skip
