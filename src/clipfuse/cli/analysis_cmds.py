"""analyze, robustness, report: why fusing helps, how backbones break, and the written report."""

from __future__ import annotations

import json
from pathlib import Path

from clipfuse.cli.common import (
    add_data_args,
    add_threads_arg,
    command,
    existing_store,
    open_data,
    open_view,
    parsers,
    print_table,
)
from clipfuse.errors import ClipfuseError


@command("analyze")
def cmd_analyze(args) -> int:
    from clipfuse.analysis import analyze_view
    from clipfuse.evaluation.zeroshot_eval import per_class_recall
    from clipfuse.reports.results import save_analysis

    store = existing_store(args.store)
    sources = args.data
    splits = args.split if len(args.split) == len(sources) else args.split * len(sources)
    if len(splits) != len(sources):
        raise ClipfuseError("give one --split, or one --split per --data")
    summary = []
    for source, split in zip(sources, splits):
        bundle = open_view(args, store, split, source=source)
        comp, cka = analyze_view(bundle, cka=args.cka)
        gflops = {n: g for n, g in zip(bundle.names, bundle.gflops) if g is not None}
        save_analysis(
            args.out,
            bundle.dataset,
            comp,
            cka=cka,
            gflops=gflops or None,
            info={"view": bundle.view, "split": split, "specs": bundle.specs, "source": source,
                  "per_class": per_class_recall(bundle), "classnames": list(bundle.classnames),
                  "templates": list(bundle.templates)},  # fmt: skip
        )
        summary.append(
            {
                "dataset": bundle.dataset,
                "n": comp.n_samples,
                "best single": comp.best_backbone,
                "best acc": float(comp.best_accuracy),
                "oracle": float(comp.oracle_accuracy),
                "oracle gap": float(comp.oracle_gap),
                "disagreement": comp.mean_disagreement,
                "mean JS": comp.mean_js_divergence,
            }
        )
        if not args.json:
            print(f"\n{bundle.dataset}/{split}: per-backbone top-1 (%)")
            print_table(
                [
                    {"backbone": n, "top1": float(a), "alone correct": int(u)}
                    for n, a, u in zip(comp.backbones, comp.accuracy, comp.unique_correct_count)
                ],
                ["backbone", "top1", "alone correct"],
            )
            print(f"linear CKA ({cka.method}):")
            print_table(
                [
                    {"": n, **{m: float(v) for m, v in zip(cka.backbones, row)}}
                    for n, row in zip(cka.backbones, cka.matrix)
                ],
                ["", *cka.backbones],
            )
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print("\nsummary (best single is chosen on this split: descriptive, not a method)")
        print_table(summary, list(summary[0]))
        print(f"written: {args.out}/analysis.json  (then: clipfuse report {args.out})")
    return 0


@command("robustness")
def cmd_robustness(args) -> int:
    from clipfuse.backbones import load_backbone
    from clipfuse.data.holdout import parse_budgets
    from clipfuse.evaluation.robustness import robustness_study
    from clipfuse.extraction.perturbations import PERTURBATIONS, perturbation_grid
    from clipfuse.reports.results import save_robustness

    store = existing_store(args.store)
    names = (
        list(PERTURBATIONS)
        if args.perturbations == "all"
        else [p.strip() for p in args.perturbations.split(",")]
    )
    try:
        severities = [int(s) for s in args.severities.split(",")]
    except ValueError:
        raise ClipfuseError(
            f"--severities takes integers 1..5 like 1,3,5; got {args.severities!r}"
        ) from None
    grid = perturbation_grid(names, severities, seed=args.seed)
    (shots, fraction), *rest = parse_budgets(args.shots, args.fraction)
    if rest:
        raise ClipfuseError("robustness takes one label budget")
    train = open_view(args, store, args.train_split, limit=args.train_limit)
    test_data = open_data(args, args.test_split, limit=args.test_limit)
    backbones = [load_backbone(s, device=args.device) for s in train.specs]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = robustness_study(
        store,
        backbones,
        train,
        test_data,
        grid,
        methods,
        shots=shots,
        fraction=fraction,
        seeds=list(range(args.seeds)),
        batch_size=args.batch_size,
        num_workers=args.workers,
        threads=args.threads,
        progress=not args.quiet,
    )
    save_robustness(args.out, result["records"])
    Path(args.out, "robustness_protocol.json").write_text(json.dumps(result["protocol"], indent=1))
    rows = [
        {
            "perturbation": f"{r['perturbation']}-{r['severity']}",
            "model": r["method"],
            "top1": float(r["accuracy"]),
            "drop": 100 * r["drop"],  # points on screen; a fraction in robustness.json
        }
        for r in result["records"]
    ]
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(rows, ["perturbation", "model", "top1", "drop"])
        print(f"written: {args.out}/robustness.json")
    return 0


@command("report")
def cmd_report(args) -> int:
    from clipfuse.reports.report import write_report

    files = write_report(args.results_dir, title=args.title)
    print(f"written: {files.markdown}\n         {files.html} ({len(files.figures)} figures)")
    return 0


@parsers
def add_parsers(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="agreement, oracle, diversity and CKA of the backbones, from cached features",
    )
    add_data_args(p, many=True)  # one --split, or one per --data
    p.add_argument("--store", required=True)
    p.add_argument("--backbone", action="append", default=None)
    p.add_argument("--cka", default="auto", choices=["auto", "exact", "minibatch"])
    p.add_argument("--out", required=True, help="results directory (analysis.json)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("robustness", help="accuracy of backbones and ensembles under perturbations")
    add_data_args(p, split=False)
    p.add_argument("--store", required=True)
    p.add_argument("--backbone", action="append", default=None)
    p.add_argument("--train-split", required=True)
    p.add_argument("--test-split", required=True)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--perturbations", default="all", help="comma list or 'all'")
    p.add_argument("--severities", default="1,3,5")
    p.add_argument("--methods", default="mean_logits,super_learner,nlc")
    p.add_argument("--shots", default="1")
    p.add_argument("--fraction", default=None)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="perturbation seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None)
    add_threads_arg(p)
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser(
        "report", help="Markdown + self-contained HTML report of a results directory"
    )
    p.add_argument("results_dir")
    p.add_argument("--title", default="clipfuse report")


@command("demo")
def cmd_demo(args) -> int:
    from clipfuse.demo import run_demo

    run_demo(args.out, seeds=args.seeds, progress=not args.quiet)
    return 0


@parsers
def add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="the whole method offline on the zoo backbones and the shipped data"
    )
    p.add_argument(
        "--out", default="clipfuse-demo", help="output folder (its store/ is reused by reruns)"
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--quiet", action="store_true")


@command("zoo")
def cmd_zoo(args) -> int:
    from clipfuse.zoo.train import main as zoo_train_main

    return zoo_train_main(args.rest)


@parsers
def add_zoo_parser(sub) -> None:
    import argparse

    p = sub.add_parser(
        "zoo", help="train the zoo of small CLIP backbones (`clipfuse zoo train --help`)"
    )
    p.add_argument("action", choices=["train"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the training recipe")
