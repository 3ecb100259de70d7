"""`clipfuse demo`: the whole method, offline, on the zoo backbones and the shipped data.

Extract (cached) -> zero-shot per backbone -> oracle, static ensembles, Super Learner, MoE, NLC
and the recommended method at 1 and 4 shots over 5 hold-out seeds -> complementarity analysis -> Markdown/HTML report.
The backbones here are small CLIPs trained by this project (see `clipfuse backbones 'zoo:*'`),
not OpenAI's; the hold-outs come from train images the zoo never saw in training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from clipfuse.errors import ClipfuseError

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_DATASETS = {
    "cifar10": f"imagefolder:{DEMO_DATA / 'cifar10-demo'}",
    "fashion-mnist": f"idx:{DEMO_DATA / 'fashion-mnist-demo'}",
}


def demo_source(name: str = "cifar10") -> str:
    """The source string of a shipped demo dataset (``cifar10`` or ``fashion-mnist``: 500 train
    and 2,000 test images each, see ``demo_data/PROVENANCE.md``); works from any directory."""
    try:
        return DEMO_DATASETS[name]
    except KeyError:
        raise ClipfuseError(
            f"unknown demo dataset {name!r}; known: {', '.join(DEMO_DATASETS)}"
        ) from None


def run_demo(
    out: str | Path = "clipfuse-demo",
    *,
    shots: tuple[int, ...] = (1, 4),
    seeds: int = 5,
    methods: list[str] | None = None,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run the demo into `out` (the feature store lives in `out/store`, so a rerun reuses it)."""
    from clipfuse.analysis import analyze_view
    from clipfuse.backbones import list_backbones, load_backbone
    from clipfuse.combiners.registry import RECOMMENDED
    from clipfuse.data import open_dataset
    from clipfuse.evaluation.outputs import write_results
    from clipfuse.evaluation.runner import CORE_METHODS, evaluate_methods
    from clipfuse.evaluation.tables import format_compact, format_markdown
    from clipfuse.evaluation.zeroshot_eval import per_class_recall
    from clipfuse.extraction import extract
    from clipfuse.logits.views import bundle_for
    from clipfuse.reports.report import write_report
    from clipfuse.reports.results import save_analysis
    from clipfuse.store import FeatureStore

    start = time.perf_counter()
    out = Path(out)
    specs = [e.spec for e in list_backbones("zoo:*")]
    if not specs:
        raise ClipfuseError("no zoo backbones are installed (src/clipfuse/zoo/weights is empty)")
    missing = [
        name for name, src in DEMO_DATASETS.items() if not Path(src.split(":", 1)[1]).exists()
    ]
    if missing:
        raise ClipfuseError(f"shipped demo data missing for {', '.join(missing)} in {DEMO_DATA}")
    log(f"backbones: {', '.join(specs)}")
    backbones = [load_backbone(s) for s in specs]
    store = FeatureStore(out / "store")
    tables: dict[str, str] = {}
    for name, source in DEMO_DATASETS.items():
        views = {}
        for split in ("train", "test"):
            dataset = open_dataset(source, split)
            report = extract(backbones, dataset, store, progress=progress)
            state = (
                "cached"
                if report.images_processed == 0
                else f"{report.images_per_second:.0f} img/s"
            )
            log(f"{name}/{split}: {len(dataset)} images x {len(backbones)} backbones ({state})")
            views[split] = bundle_for(store, dataset, specs)
        train, test = views["train"], views["test"]
        result = evaluate_methods(
            train,
            test,
            methods or [*CORE_METHODS, RECOMMENDED],
            [(k, None) for k in shots],
            list(range(seeds)),
            dataset=name,
            progress=progress,
        )
        command = ["clipfuse", "demo", "--out", str(out)]
        write_results(result, out / name, command=command, report_dir=out)
        comp, cka = analyze_view(test, cka="exact")
        save_analysis(
            out,
            name,
            comp,
            cka=cka,
            gflops={n: g for n, g in zip(test.names, test.gflops) if g is not None},
            info={"view": test.view, "specs": test.specs, "source": source,
                  "per_class": per_class_recall(test), "classnames": list(test.classnames),
                  "templates": list(test.templates)},  # fmt: skip
        )
        rows = result.summary()
        tables[name] = format_markdown(rows)
        log(
            f"\n## {name} (test: {test.labels.numel()} images; hold-out from {train.labels.numel()} train images)\n"
        )
        log(format_compact(rows, RECOMMENDED))
        log(f"full table: {out / name / 'results.md'}")
    files = write_report(out, title="clipfuse demo: zoo backbones on CIFAR-10 and Fashion-MNIST")
    seconds = time.perf_counter() - start
    log(f"\nreport: {files.html}  ({seconds:.0f}s in all)")
    return {"tables": tables, "report": files, "seconds": seconds}
