"""Replay ``auto``'s rules on the task suite's cached runs (issue 21): exact, no refitting.

``auto`` fits the candidate it chooses exactly as the benchmark fits that candidate alone (same
seed, same rows), so its top-1 for any rule setting is the chosen candidate's recorded top-1.
This replays the recorded cross-validation scores (``auto_cv``) and zero-shot signals
(``auto_signals``) under other margins, 1-shot thresholds and 1-shot heads, and prints the
suite's figures for each -- how the defaults of ``clipfuse.combiners.select`` were chosen.
Needs ``bench_suite.py`` to have run ``auto`` and its candidates (cache).

    python benchmarks/tune_auto.py --store /tmp/suite/store --cache /tmp/suite/cache
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _suite import TASKS  # noqa: E402
from bench_suite import HELD_SLACK, run_cell  # noqa: E402

CANDIDATES = ["safe_conf_mix", "zs_probe", "tipf_super_learner", "lp_super_learner@1"]


def per_seed(cell: dict) -> dict[tuple[str, int], dict]:
    return {(r["budget"], r["seed"]): r for r in cell["records"]}


def choose_cv(cv: dict, margin: float, fallback: str = "safe_conf_mix") -> str:
    best = max(cv, key=lambda n: (cv[n]["cv_acc"], -cv[n]["cv_nll"]))
    return fallback if cv[best]["cv_acc"] <= cv[fallback]["cv_acc"] + margin else best


def choose_one_shot(signals: dict, threshold: float, heads: str) -> str:
    weak = signals["zs_acc_labelled"] < threshold * signals["chance"]
    return heads if weak else "safe_conf_mix"


def summarise(name: str, tops: dict, refs: dict) -> None:
    for budget in ("1-shot", "4-shot", "16-shot"):
        gains, held = [], 0
        for task, ref in refs.items():
            vals = np.asarray(tops.get((task, budget), []))
            if vals.size == 0:
                break
            gains.append(vals.mean() - ref)
            held += vals.mean() >= ref and vals.min() >= ref - HELD_SLACK
        else:
            print(f"| {name} | {budget} | {held}/{len(refs)} | {np.mean(gains):+.2f} | "
                  f"{np.min(gains):+.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="clipfuse-suite-store")
    parser.add_argument("--cache", default="clipfuse-suite-cache")
    parser.add_argument("--auto", default="auto", help="the auto spec whose records to replay")
    args = parser.parse_args()
    shots, seeds = [1, 4, 16], [0, 1, 2, 3, 4]
    cells, autos, refs = {}, {}, {}
    for task in TASKS:
        for spec in CANDIDATES:
            cells[(task.label, spec.split("@")[0])] = per_seed(
                run_cell(task, spec, shots, seeds, args.store, Path(args.cache))
            )
        auto = run_cell(task, args.auto, shots, seeds, args.store, Path(args.cache))
        autos[task.label], refs[task.label] = per_seed(auto), auto["reference"]
    print("| rule | budget | cells held | mean gain | worst cell |\n|---|---|---|---|---|")
    variants = [(m, t, h) for m in (0.0, 0.5, 1.0, 2.0, 3.0) for t in (1.5, 2.0, 3.0)
                for h in ("lp_super_learner", "tipf_super_learner", "zs_probe")]  # fmt: skip
    for margin, threshold, heads in variants:
        tops: dict[tuple[str, str], list[float]] = {}
        for task, recs in autos.items():
            for (budget, seed), rec in recs.items():
                info = rec["info"]
                if "auto_cv" in info:
                    choice = choose_cv(info["auto_cv"], margin)
                else:
                    choice = choose_one_shot(info["auto_signals"], threshold, heads)
                top1 = cells[(task, choice)][(budget, seed)]["top1"]
                tops.setdefault((task, budget), []).append(top1)
        summarise(f"margin {margin}, 1-shot: {heads} below {threshold}x chance", tops, refs)


if __name__ == "__main__":
    main()
