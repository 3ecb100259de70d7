"""backbones, datasets, extract, zeroshot: the foundation commands."""

from __future__ import annotations

import json
import sys

from clipfuse.cli.common import (
    add_data_args,
    add_engine_args,
    add_threads_arg,
    command,
    existing_store,
    open_data,
    parsers,
    print_table,
)


@command("backbones")
def cmd_backbones(args) -> int:
    from clipfuse.backbones import list_backbones

    entries = list_backbones(args.pattern)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=1))
        return 0
    if not entries:
        print(f"no backbone matches {args.pattern!r}", file=sys.stderr)
        return 1
    print_table(
        [e.to_dict() for e in entries],
        ["spec", "family", "embed_dim", "image_size", "image_gflops", "source"],
    )
    return 0


@command("datasets")
def cmd_datasets(args) -> int:
    from clipfuse.data import list_datasets, templates_for

    for name in list_datasets(args.pattern):
        print(f"{name:16s} {len(templates_for(name)):3d} templates")
    return 0


@command("extract")
def cmd_extract(args) -> int:
    from clipfuse.backbones import load_backbone
    from clipfuse.engines import get_engine
    from clipfuse.extraction.options import ExtractOptions
    from clipfuse.store import FeatureStore

    local = args.engine == "local"
    engine = None if local else get_engine(args.engine, args.ray_address)  # no Ray: fail first
    dataset = open_data(args)
    store = FeatureStore(args.store)
    options = ExtractOptions(
        batch_size=args.batch_size,
        num_workers=args.workers,
        shard_size=args.shard_size,
        feature_dtype=args.feature_dtype,
        progress=not args.quiet,
        threads=args.threads,
    )
    if local:  # nothing to do: told from the store's records, no model built
        from clipfuse.extraction.noop import finished_extraction

        done = finished_extraction(args.backbone, dataset, store, options)
        if done is not None:
            _print_nothing_to_do(done.view, len(done.entries))
            return 0
        engine = get_engine(args.engine, args.ray_address)
    backbones = [  # image towers only, each text tower freed before the next model is built
        load_backbone(s, device=args.device, precision=args.precision, image_only=True)
        for s in args.backbone
    ]
    with engine:
        report = engine.extract(backbones, dataset, store, options)
    if report.images_processed == 0:
        _print_nothing_to_do(report.view, len(backbones))
    else:
        print(
            f"{report.view}: {report.images_processed} images x {len(backbones)} backbone(s) in "
            f"{report.seconds:.1f}s ({report.images_per_second:.1f} img/s), {report.shards_written} shard(s) written"
        )
    if report.failures:
        print(
            f"skipped {len(report.failures)} unreadable image(s), listed in the manifests:",
            file=sys.stderr,
        )
        for f in report.failures[:10]:
            print(f"  {f['sample_id']}: {f['error']}", file=sys.stderr)
    return 0


def _warn_never_predicted(names: list[str]) -> None:
    """One line on stderr naming every class no backbone predicts (a name the text towers do not
    know fails silently otherwise: 0 % recall, a slightly low mean)."""
    if names:
        listed = ", ".join(repr(n) for n in names)
        print(
            f"warning: no backbone predicts {len(names)} class(es) for any image: {listed}; "
            "check the class names (--classnames) and the prompt templates (--templates)",
            file=sys.stderr,
        )


def _print_nothing_to_do(view: str, num_backbones: int) -> None:
    print(f"{view}: already extracted for {num_backbones} backbone(s); nothing to do")


@command("zeroshot")
def cmd_zeroshot(args) -> int:
    from clipfuse.evaluation.zeroshot_eval import never_predicted, per_class_recall, zeroshot_table
    from clipfuse.logits.views import bundle_for

    dataset = open_data(args)
    bundle = bundle_for(existing_store(args.store), dataset)
    rows = zeroshot_table(bundle)
    per_class = per_class_recall(bundle) if args.per_class else None
    if args.predictions or args.logits:
        from clipfuse.evaluation.per_sample import write_per_sample

        for path in write_per_sample(bundle, predictions=args.predictions, logits=args.logits):
            print(f"wrote {path}", file=sys.stderr)
    _warn_never_predicted(never_predicted(bundle))
    if args.json:
        answer = {
            "view": bundle.view,
            "dataset": dataset.name,
            "split": dataset.split,
            "classnames": list(bundle.classnames),
            "templates": list(bundle.templates),
            "results": rows,
        }
        if per_class is not None:
            answer["per_class"] = per_class
        print(json.dumps(answer, indent=1))
        return 0
    print(f"zero-shot on {bundle.view} ({rows[0]['n']} images, {len(dataset.classnames)} classes)")
    print(f"class names: {', '.join(bundle.classnames)}")
    first = bundle.templates[0] if bundle.templates else ""
    print(f"prompt templates: {len(bundle.templates)} (first: {first!r})")
    print_table(rows, ["backbone", "top1", "top5", "mean_per_class_recall"])
    if per_class is not None:
        print("\nrecall per class (%):")
        print_table(per_class, ["class", "n", *bundle.names], percent=bundle.names)
    return 0


@parsers
def add_parsers(sub) -> None:
    p = sub.add_parser("backbones", help="list known backbone specs (open_clip tags and the zoo)")
    p.add_argument(
        "pattern", nargs="?", default="*", help="shell pattern, e.g. 'zoo:*' or 'ViT-B*'"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("datasets", help="list datasets with known class names / templates")
    p.add_argument("pattern", nargs="?", default="*")

    p = sub.add_parser(
        "extract", help="encode a dataset split with several backbones into a feature store"
    )
    p.add_argument(
        "--backbone", action="append", required=True, help="backbone spec (repeat for several)"
    )
    add_data_args(p)
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decode workers (default: up to 4; none on a 2-core CPU with encoders of >= 1 GFLOP)",
    )
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument(
        "--feature-dtype",
        default="float16",
        choices=["float16", "float32"],
        help="storage precision of features (float32 for bit-exact parity checks)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_arg(p)
    add_engine_args(p)

    p = sub.add_parser("zeroshot", help="per-backbone zero-shot accuracy from cached features")
    add_data_args(p)
    p.add_argument("--store", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--predictions", default=None, help="CSV: sample_id,backbone,label,pred,top1..top5,..."
    )
    p.add_argument(
        "--logits", default=None, help="safetensors: (B, N, C) logits, labels, sample ids"
    )
    p.add_argument(
        "--per-class", action="store_true", help="recall of every class for every backbone"
    )
