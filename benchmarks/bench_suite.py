"""Issue 21's task suite benchmark: any set of methods over 13 tasks x 1/4/16 shots x 5 seeds.

The tasks (``_suite.TASKS``) are built only from the zoo's train hold-out (labelled pool) and the
shipped demo test images (evaluation), clean or transformed; every default, candidate set and
rule of issue 21 is chosen here and nowhere else. Per method and budget it prints:
- cells held: tasks where the mean over seeds >= the reference (the backbone best on that task's
  evaluation images) and the worst seed >= reference - 0.5;
- mean gain vs the reference (points), the worst cell, the mean share of the oracle gap;
- regret: points below the best method of this run on each task (hindsight), mean and worst.
A method is a registered name, optionally with parameters as JSON: ``'auto{"margin": 0}'``, and
optionally ``@1+4`` to run it at those shots only.
Results are cached per (task, method spec, shots, seeds) under ``--cache``, so adding a method
to a table reruns only that method.

    nice python benchmarks/bench_suite.py --store /tmp/suite/store --cache /tmp/suite/cache \
        --methods safe_conf_mix,nlc,nlc_learn,zs_probe,lp_super_learner,tipf_super_learner,auto
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402
from _suite import TASKS, load_task  # noqa: E402

from clipfuse.evaluation.runner import evaluate_methods  # noqa: E402
from clipfuse.evaluation.schema import pct  # noqa: E402

METHODS = "safe_conf_mix,nlc,nlc_learn,zs_probe,lp_super_learner,tipf_super_learner,auto"
HELD_SLACK = 0.5  # a cell is held if mean >= reference and worst seed >= reference - this
# a cached cell holds points (percent), as its tables print: cell row key <- summary key (fractions)
CELL_POINTS = {
    "top1_mean": "mean", "top1_ci_low": "ci_low", "top1_ci_high": "ci_high",
    "gain_vs_reference_points": "gain_vs_reference",
    "worst_vs_reference_points": "worst_vs_reference", "oracle_gap_share_pct": "oracle_gap_share",
}  # fmt: skip


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``'auto{"margin": 0}'`` -> ("auto", {"margin": 0})."""
    name, brace, rest = spec.partition("{")
    return name.strip(), (json.loads(brace + rest) if brace else {})


def split_specs(text: str) -> list[str]:
    """Comma-separated specs; commas inside a JSON object do not split."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [s.strip() for s in out + [cur] if s.strip()]


def run_cell(
    task, spec: str, shots: list[int], seeds: list[int], store: str, cache: Path,
    report: bool = False,
):  # fmt: skip
    """Rows of one (task, method spec): per budget mean/worst vs reference, per-seed records.
    ``spec@1+4`` runs that spec at 1 and 4 shots only; ``report``: evaluated on the final-report
    images (``_suite.report_eval_dataset``), cached under their own key."""
    spec, at, only = spec.partition("@")
    if at:
        shots = [int(k) for k in only.split("+")]
    what = [task.label, spec, shots, seeds] + (["report"] if report else [])
    key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]
    path = cache / f"{task.label.replace('/', '_')}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    name, params = parse_spec(spec)
    pool, held = load_task(task, store, progress=False, report=report)
    t0 = time.perf_counter()
    result = evaluate_methods(
        pool, held, [name], [(k, None) for k in shots], seeds, dataset=task.label,
        method_params={name: params}, progress=False,
    )  # fmt: skip
    rows = [r for r in result.summary() if r["kind"] == "method"]
    out = {
        "task": task.label,
        "spec": spec,
        "reference": 100 * max(result.singles.values()),
        "singles": {k: 100 * v for k, v in result.singles.items()},
        "oracle": 100 * result.oracle,
        "rows": [  # the cell's own format, in points (tune_auto and the cache read it so)
            {
                "budget": r["budget"],
                "fit_s": r["fit_s"],
                **{old: pct(r[new]) for old, new in CELL_POINTS.items() if new in r},
            }
            for r in rows
        ],  # fmt: skip
        "records": [
            {"budget": r.budget, "seed": r.seed, "top1": 100 * r.top1, "info": r.info}
            for r in result.records
        ],
        "wall_s": time.perf_counter() - t0,
    }
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, default=str))
    return out


def _row_of(cell: dict, budget: str) -> dict | None:
    return next((r for r in cell["rows"] if r["budget"] == budget), None)


def aggregate(cells: dict[tuple[str, str], dict], specs: list[str], budgets: list[str]):
    """Per (spec, budget): held cells, mean/worst gain, oracle share, regret (mean, worst).
    A spec run at fewer budgets (``--shots 1``) appears only at those."""
    order = [t.label for t in TASKS]
    tasks = sorted({t for t, _ in cells}, key=order.index)
    table = []
    for budget in budgets:
        ran = [s for s in specs if all(_row_of(cells[(t, s)], budget) for t in tasks)]
        best = {t: max(_row_of(cells[(t, s)], budget)["top1_mean"] for s in ran) for t in tasks}
        for s in ran:
            gains, worsts, shares, regrets, held = [], [], [], [], 0
            for t in tasks:
                r = _row_of(cells[(t, s)], budget)
                gains.append(r["gain_vs_reference_points"])
                worsts.append(r["worst_vs_reference_points"])
                shares.append(r["oracle_gap_share_pct"] or 0.0)
                regrets.append(best[t] - r["top1_mean"])
                held += gains[-1] >= 0 and worsts[-1] >= -HELD_SLACK
            table.append({
                "method": s, "budget": budget, "held": held, "tasks": len(tasks),
                "gain": float(np.mean(gains)), "worst_cell": float(np.min(gains)),
                "oracle_share": float(np.mean(shares)), "regret": float(np.mean(regrets)),
                "worst_regret": float(np.max(regrets)),
            })  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="clipfuse-suite-store")
    parser.add_argument("--cache", default="clipfuse-suite-cache")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--tasks", default="", help="comma-separated task labels (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-task", action="store_true", help="also print every task's cells")
    parser.add_argument("--out", default=None, help="JSON file for the aggregate and the cells")
    parser.add_argument(
        "--report", action="store_true",
        help="FINAL REPORTING ONLY: evaluate on 2,000 test images outside the demo subset per "
        "dataset (run once, after every choice is frozen; never choose on it)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(describe()))
    specs = split_specs(args.methods)
    shots = [int(k) for k in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [t for t in TASKS if not args.tasks or t.label in args.tasks.split(",")]
    cells: dict[tuple[str, str], dict] = {}
    for spec in specs:  # method-major: a method's whole row is done before the next starts
        for task in tasks:
            cell = run_cell(task, spec, shots, seeds, args.store, Path(args.cache), args.report)
            cells[(task.label, spec)] = cell
            print(f"{task.label:28s} {spec:40s} ref {cell['reference']:.1f} " + " ".join(
                f"{r['budget']}:{r['gain_vs_reference_points']:+.2f}" for r in cell["rows"]
            ) + f" ({cell['wall_s']:.0f}s)", flush=True)  # fmt: skip
    budgets = sorted(
        {r["budget"] for c in cells.values() for r in c["rows"]}, key=lambda b: int(b.split("-")[0])
    )
    print("\n## tasks: reference (best backbone on the evaluation images), oracle")
    for task in tasks:
        cell = cells[(task.label, specs[0])]
        best = max(cell["singles"], key=cell["singles"].get)
        print(f"- {task.label}: reference {cell['reference']:.2f} ({best}), "
              f"oracle {cell['oracle']:.2f}")  # fmt: skip
    table = aggregate(cells, specs, budgets)
    print(f"\n## suite: {len(tasks)} tasks x {budgets} x seeds {seeds}")
    print("| method | budget | cells held | mean gain vs ref | worst cell | oracle gap % | "
          "regret (mean) | regret (worst) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['method']} | {r['budget']} | {r['held']}/{r['tasks']} | {r['gain']:+.2f} | "
              f"{r['worst_cell']:+.2f} | {r['oracle_share']:+.1f} | {r['regret']:.2f} | "
              f"{r['worst_regret']:.2f} |")  # fmt: skip
    if args.per_task:
        print("\n## per task: mean gain vs reference [worst seed]")
        for spec in specs:
            print(f"\n### {spec}")
            for task in tasks:
                rows = cells[(task.label, spec)]["rows"]
                print(f"- {task.label}: " + ", ".join(
                    f"{r['budget']} {r['gain_vs_reference_points']:+.2f} "
                    f"[{r['worst_vs_reference_points']:+.2f}]" for r in rows))  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"aggregate": table, "cells": {f"{t}|{s}": c for (t, s), c in cells.items()}},
            indent=1, default=str,
        ))  # fmt: skip


if __name__ == "__main__":
    main()
