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

CANDIDATES = [
    "safe_conf_mix", "zs_probe", "tipf_super_learner", "lp_super_learner@1", "nlc_learn",
]  # fmt: skip


def per_seed(cell: dict) -> dict[tuple[str, int], dict]:
    return {(r["budget"], r["seed"]): r for r in cell["records"]}


def choose_cv(cv: dict, margin: float, n: int = 1, examples: int = 0) -> str:
    """auto's CV rule: the winner must beat safe_conf_mix by more than ``margin`` points and by
    more than ``examples`` held-out rows (of ``n``)."""
    from clipfuse.combiners.select import choose_by_cv

    # runs recorded before the one result schema (issue 22) hold cv_acc in percent
    cv = {k: {**v, "cv_acc": v["cv_acc"] / (100 if v["cv_acc"] > 1 else 1)} for k, v in cv.items()}
    return choose_by_cv(cv, "safe_conf_mix", margin, examples, n)


def choose_one_shot(signals: dict, threshold: float, heads: str, strong: str) -> str:
    """``threshold`` > 0: zero-shot accuracy on the labelled rows (x chance); < 0: the
    backbones' agreement on all images (x chance) below ``-threshold``."""
    if threshold < 0:
        weak = signals["agreement_excess"] < -threshold
    else:
        weak = signals["zs_acc_labelled"] < threshold * signals["chance"]
    return heads if weak else strong


def summarise(
    name: str, tops: dict, refs: dict, budgets: tuple[str, ...] = ("1-shot", "4-shot", "16-shot")
) -> None:
    for budget in budgets:
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


def one_shot_signals(task, store: str, seeds: list[int]) -> dict[tuple[str, int], dict]:
    """auto's 1-shot evidence for every seed, computed from exactly the inputs auto's fit gets
    (the 1-shot hold-out + the rest of the pool unlabelled): no fitting, so no auto run needed."""
    from _suite import load_task

    from clipfuse.combiners import make_combiner
    from clipfuse.combiners._compose import fit_inputs
    from clipfuse.combiners.select import zero_shot_signals

    pool, _ = load_task(task, store, progress=False)
    out = {}
    for seed in seeds:
        _, z, y, _ = fit_inputs(make_combiner("auto"), pool, pool.holdout(1, seed=seed))
        out[("1-shot", seed)] = {"info": {"auto_signals": zero_shot_signals(z, y)}}
    return out


def replay_blend(store: str, cache: Path, stack_spec: str) -> None:
    """Replay ``combine`` = choose / stack / hybrid at 4 and 16 shots from the per-draw records of
    ``auto{}`` (the winner alone) and ``stack_spec`` (the blend always): the hybrid uses the winner
    where it beats safe_conf_mix by the margin (the CV scores are the same in both runs), the blend
    elsewhere -- how ``combine = "hybrid"`` was chosen."""
    seeds = [0, 1, 2, 3, 4]
    print("| combine | budget | cells held | mean gain | worst cell |\n|---|---|---|---|---|")
    for rule in ("choose", "stack", "hybrid"):
        tops: dict[tuple[str, str], list[float]] = {}
        refs = {}
        for task in TASKS:
            alone = run_cell(task, "auto{}", [1, 4, 16], seeds, store, cache)
            blend = per_seed(run_cell(task, stack_spec, [1, 4, 16], seeds, store, cache))
            refs[task.label] = alone["reference"]
            for (budget, seed), rec in per_seed(alone).items():
                if budget == "1-shot":
                    continue
                clear = choose_cv(rec["info"]["auto_cv"], 1.0, 10 * int(budget[:-5]), 1)
                use_blend = rule == "stack" or (rule == "hybrid" and clear == "safe_conf_mix")
                top1 = (blend[(budget, seed)] if use_blend else rec)["top1"]
                tops.setdefault((task.label, budget), []).append(top1)
        summarise(rule, tops, refs, budgets=("4-shot", "16-shot"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="clipfuse-suite-store")
    parser.add_argument("--cache", default="clipfuse-suite-cache")
    parser.add_argument("--auto", default="auto", help="the auto spec whose records to replay")
    parser.add_argument(
        "--one-shot-only", action="store_true", help="replay the 1-shot rule without auto's runs"
    )
    parser.add_argument(
        "--blend", default=None, metavar="STACK_SPEC",
        help="replay combine=choose/stack/hybrid from auto{} and this always-blend run instead",
    )  # fmt: skip
    args = parser.parse_args()
    if args.blend:
        replay_blend(args.store, Path(args.cache), args.blend)
        return
    shots, seeds = [1, 4, 16], [0, 1, 2, 3, 4]
    cells, autos, refs = {}, {}, {}
    for task in TASKS:
        for spec in CANDIDATES:
            cells[(task.label, spec.split("@")[0])] = per_seed(
                run_cell(task, spec, shots, seeds, args.store, Path(args.cache))
            )
        if args.one_shot_only:
            autos[task.label] = one_shot_signals(task, args.store, seeds)
            refs[task.label] = run_cell(
                task, "safe_conf_mix", shots, seeds, args.store, Path(args.cache)
            )["reference"]
            continue
        auto = run_cell(task, args.auto, shots, seeds, args.store, Path(args.cache))
        autos[task.label], refs[task.label] = per_seed(auto), auto["reference"]
    print("| rule | budget | cells held | mean gain | worst cell |\n|---|---|---|---|---|")
    heads_ = ("lp_super_learner", "tipf_super_learner", "zs_probe")
    strong_ = ("safe_conf_mix", "zs_probe", "tipf_super_learner", "nlc_learn")
    variants = [(m, 0, 4.0, "lp_super_learner", "safe_conf_mix") for m in (0.0, 1.0, 2.0, 3.0)]
    variants += [(1.0, e, 4.0, "lp_super_learner", "safe_conf_mix") for e in (1, 2, 3, 4)]
    variants += [(1.0, 2, t, h, s) for t in (1.5, 2.0, 3.0, 4.0) for h in heads_ for s in strong_]
    variants += [(1.0, 2, -a, "lp_super_learner", "safe_conf_mix") for a in (2, 3, 4, 5, 6, 7)]
    for margin, examples, threshold, heads, strong in variants:
        tops: dict[tuple[str, str], list[float]] = {}
        for task, recs in autos.items():
            for (budget, seed), rec in recs.items():
                info = rec["info"]
                if "auto_cv" in info:
                    n = 10 * int(budget.split("-")[0])
                    choice = choose_cv(info["auto_cv"], margin, n, examples)
                else:
                    choice = choose_one_shot(info["auto_signals"], threshold, heads, strong)
                top1 = cells[(task, choice)][(budget, seed)]["top1"]
                tops.setdefault((task, budget), []).append(top1)
        signal = f"agreement below {-threshold}x" if threshold < 0 else f"zs below {threshold}x"
        name = (f"margin {margin} pts and > {examples} rows; 1 shot: {heads} if {signal} chance, "
                f"else {strong}")  # fmt: skip
        summarise(name, tops, refs)


if __name__ == "__main__":
    main()
