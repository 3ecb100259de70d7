"""evaluate, fit, predict: combiners on cached features, saved ensembles, new images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from clipfuse.cli.common import (
    add_data_args,
    add_engine_args,
    add_threads_arg,
    command,
    existing_store,
    open_view,
    parsers,
    print_table,
)
from clipfuse.errors import ClipfuseError


def _param_value(value: str):
    """JSON when it parses (numbers, booleans, lists), else the raw string (protocol=split)."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _method_params(args) -> dict:
    params: dict = {}
    for item in args.param or []:
        try:
            key, value = item.split("=", 1)
            method, name = key.split(".", 1)
            params.setdefault(method, {})[name] = _param_value(value)
        except ValueError:
            raise ClipfuseError(
                f"--param takes METHOD.NAME=VALUE (e.g. nlc.steps=500); got {item!r}"
            ) from None
    return params


def _command_line(args) -> list[str]:
    """An equivalent `clipfuse ...` line rebuilt from the parsed options, so the results record
    what ran even when `main([...])` is called in-process (sys.argv is then the host's)."""
    line = ["clipfuse", args.command]
    for key, value in vars(args).items():
        if key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            line.append(flag)
        else:
            for item in value if isinstance(value, list) else [value]:
                line += [flag, str(item)]
    return line


@command("evaluate")
def cmd_evaluate(args) -> int:
    from clipfuse.combiners.registry import RECOMMENDED
    from clipfuse.data.holdout import parse_budgets
    from clipfuse.engines import get_engine
    from clipfuse.evaluation.fanout import evaluate_with
    from clipfuse.evaluation.outputs import write_results
    from clipfuse.evaluation.tables import format_compact

    command_line = _command_line(args)
    engine = None if args.engine == "local" else get_engine(args.engine, args.ray_address)
    store = existing_store(args.store)
    budgets = parse_budgets(args.shots, args.fraction)
    if args.seeds < 1:
        raise ClipfuseError("--seeds must be at least 1")
    limit = args.limit  # --limit applies to both splits unless --train/--test-limit say otherwise
    train_limit = limit if args.train_limit is None else args.train_limit
    test_limit = limit if args.test_limit is None else args.test_limit
    train = open_view(args, store, args.train_split, limit=train_limit)
    test = open_view(args, store, args.test_split, limit=test_limit)
    try:
        result = evaluate_with(
            engine,
            train,
            test,
            [m.strip() for m in args.methods.split(",") if m.strip()],
            budgets,
            list(range(args.seed_offset, args.seed_offset + args.seeds)),
            dataset=train.dataset,
            method_params=_method_params(args),
            clamp=args.clamp_shots,
            device=args.device,
            progress=not args.quiet,
        )
    finally:
        if engine is not None:
            engine.close()
    paths = write_results(result, args.out, command_line)
    if args.json:
        print(json.dumps(result.summary(), indent=1))
    else:
        print(format_compact(result.summary(), RECOMMENDED))
        print(f"full table: {paths['md']}; written: {', '.join(str(p) for p in paths.values())}")
    return 0


@command("fit")
def cmd_fit(args) -> int:
    from clipfuse.combiners.registry import RECOMMENDED
    from clipfuse.data.holdout import parse_budgets
    from clipfuse.ensemble import fit_ensemble
    from clipfuse.ensemble.fit import describe_fit

    store = existing_store(args.store)
    (shots, fraction), *rest = parse_budgets(args.shots, args.fraction)
    if rest:
        raise ClipfuseError("fit takes one label budget (one --shots value or one --fraction)")
    train = open_view(args, store, args.train_split)
    ensemble = fit_ensemble(
        train,
        args.method or RECOMMENDED,
        shots=shots,
        fraction=fraction,
        seed=args.seed,
        params=_method_params(args).get(args.method or RECOMMENDED, {}),
        clamp=args.clamp_shots,
        device=args.device,
        allow_transductive=args.allow_transductive,
    )
    path = ensemble.save(args.out)
    print("\n".join(describe_fit(ensemble)))
    print(f"saved {path}")
    return 0


@command("predict")
def cmd_predict(args) -> int:
    from clipfuse.ensemble.predict import predict_images
    from clipfuse.ensemble.saved import SavedEnsemble

    ensemble = SavedEnsemble.load(args.ensemble, device=args.device)
    predictions, failures = predict_images(
        ensemble,
        args.images,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        threads=args.threads,
        top_k=args.top_k,
        progress=not args.quiet,
        transductive=args.transductive,
    )
    for f in failures:
        print(f"skipped unreadable image {f['image']} ({f['kind']}): {f['error']}", file=sys.stderr)
    if not predictions:
        raise ClipfuseError(f"none of the {len(failures)} image(s) could be read")
    if args.json:
        print(json.dumps({"predictions": predictions, "failures": failures}, indent=1))
    else:
        rows = []
        for p in predictions:
            temps = " ".join(f"{k}={v:.2f}" for k, v in p.get("temperatures", {}).items())
            rows.append(
                {
                    "image": p["image"],
                    "label": p["label"],
                    "probability": p["probability"],
                    "temperatures": temps,
                }
            )
        print_table(rows, ["image", "label", "probability", "temperatures"])
    return 0


def _add_fusion_data(p, test: bool = True) -> None:
    """The data, store and method options of the commands that fit on cached features; ``test``:
    a test split too, and a --limit per split."""
    add_data_args(p, split=False)
    p.add_argument("--train-split", required=True)
    if test:
        p.add_argument("--test-split", required=True)
        p.add_argument("--train-limit", type=int, default=None)
        p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument(
        "--backbone",
        action="append",
        default=None,
        help="use only these backbones (spec or fingerprint; default: all extracted)",
    )
    p.add_argument(
        "--method-param",
        "--param",
        dest="param",
        action="append",
        help="METHOD.NAME=JSON, e.g. nlc.steps=500 (recorded in the results)",
    )
    p.add_argument(
        "--clamp-shots",
        action="store_true",
        help="take all examples of classes with fewer than k (recorded) instead of failing",
    )
    p.add_argument("--device", default="cpu")


@parsers
def add_parsers(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="every method over label budgets and seeds: mean ± std, gains, worst case"
    )
    _add_fusion_data(p)
    p.add_argument(
        "--methods",
        default="core,recommended",
        help="comma list of combiners and groups: core, recommended, label-free, weighted, "
        "controllers, heads, compute, transductive, all (default: core,recommended; "
        "`clipfuse methods` lists them)",
    )
    p.add_argument("--shots", default=None, help="k per class, comma list (e.g. 1,4,16)")
    p.add_argument(
        "--fraction", default=None, help="fraction of train as hold-out, comma list (e.g. 0.1)"
    )
    p.add_argument("--seeds", type=int, default=3, help="number of hold-out draws (seeds 0..N-1)")
    p.add_argument("--seed-offset", type=int, default=0)
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_engine_args(p)

    p = sub.add_parser(
        "fit", help="fit one combiner on a hold-out draw and save a self-contained ensemble"
    )
    _add_fusion_data(p, test=False)
    p.add_argument(
        "--method", default=None, help="combiner name (default: the recommended one, auto)"
    )
    p.add_argument("--shots", default=None)
    p.add_argument("--fraction", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="ensemble file (.safetensors)")
    p.add_argument(
        "--allow-transductive",
        action="store_true",
        help="allow a transductive method (transclip); the saved file records it",
    )

    p = sub.add_parser("predict", help="classify new images with a saved ensemble")
    p.add_argument("ensemble", help="file written by `clipfuse fit`")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None)
    add_threads_arg(p)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument(
        "--transductive",
        action="store_true",
        help="score a transductive ensemble on all the given images together",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")


@command("tradeoffs")
def cmd_tradeoffs(args) -> int:
    """Accuracy vs compute: the cascade's prefix curve over 1..B backbones, its threshold sweep,
    the Pareto front, and the best subset per GFLOPs budget (one hold-out draw, scored on test)."""
    from clipfuse.cascade.curves import tradeoff_report
    from clipfuse.data.holdout import parse_budgets

    store = existing_store(args.store)
    (shots, fraction), *rest = parse_budgets(args.shots, args.fraction)
    if rest:
        raise ClipfuseError("tradeoffs takes one label budget")
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise ClipfuseError(
            f"--budgets takes GFLOPs numbers like 0.02,0.05; got {args.budgets!r}"
        ) from None
    train = open_view(args, store, args.train_split, limit=args.train_limit)
    test = open_view(args, store, args.test_split, limit=args.test_limit)
    params = _method_params(args)
    report = tradeoff_report(
        train,
        test,
        shots=shots,
        fraction=fraction,
        seed=args.seed,
        clamp=args.clamp_shots,
        budgets=budgets,
        cascade_params=params.get("cascade"),
        subset_params=params.get("subset_nlc"),
        device=args.device,
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "tradeoffs.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(
        f"cascade order (cheapest first): {', '.join(report['order'])}  [cost unit: {report['cost_unit']}]"
    )
    print_table(
        [
            {
                "point": p["label"],
                "cost": p["cost"],
                "top1": float(p["accuracy"]),
                "backbones/img": p["backbones"],
            }
            for p in report["prefix_curve"] + [report["cascade"]]
        ],
        ["point", "cost", "top1", "backbones/img"],
    )
    if report["subsets"]:
        print_table(
            [
                {
                    "budget": s["budget"],
                    "subset": "+".join(s["backbones"]),
                    "cost": s["cost"],
                    "top1": float(s["test_accuracy"]),
                }
                for s in report["subsets"]
            ],
            ["budget", "subset", "cost", "top1"],
        )
    print(f"written: {Path(args.out) / 'tradeoffs.json'}")
    return 0


@parsers
def add_tradeoff_parser(sub) -> None:
    p = sub.add_parser(
        "tradeoffs", help="accuracy vs GFLOPs: cascade curve, Pareto front, subsets per budget"
    )
    _add_fusion_data(p)
    p.add_argument("--shots", default="1")
    p.add_argument("--fraction", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budgets", default="", help="GFLOPs budgets for subset selection, comma list")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
