"""The label-efficiency figure of bench_fusion's JSON outputs (README, BENCHMARKS.md "Fusion").

One panel per dataset, drawn by ``clipfuse.reports.BudgetCurveDisplay``: mean top-1 gain over the
backbone best on the evaluated images, ± std over seeds, worst seed as a cross.

    PYTHONPATH=src python benchmarks/plot_fusion.py benchmarks/results/fusion-final2 \
        --out docs/figures/fusion-final2.png
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from clipfuse.evaluation.schema import summary_rows
from clipfuse.reports import BudgetCurveDisplay
from clipfuse.reports._style import new_figure, png_bytes

DATASETS = {"cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST"}
METHODS = "safe_conf_mix,safe_mix,nlc,caruana,zs_probe"


def budget_rows(result: dict) -> list[dict]:
    """Summary rows (fractions, any schema) of one result with the gain and the worst seed vs
    the reference recomputed from its records: JSON written before those columns lacks them."""
    ref = max(result["singles"].values())
    top1: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in result["records"]:
        top1[(r["method"], r["budget"])].append(r["top1"])
    rows = []
    for r in summary_rows(result):
        if r["kind"] != "method" or not r["budget"].endswith("-shot"):
            continue
        accs = top1[(r["method"], r["budget"])]
        shots = int(r["budget"].split("-")[0])
        rows.append({**r, "shots": shots, "gain_vs_reference": sum(accs) / len(accs) - ref,
                     "worst_vs_reference": min(accs) - ref})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="<prefix>-<dataset>.json, as bench_fusion --out writes")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    fig = new_figure((10.5, 3.8))
    axes = fig.subplots(1, len(DATASETS))
    for ax, (name, label) in zip(axes, DATASETS.items()):
        result = json.loads(Path(f"{args.prefix}-{name}.json").read_text())
        ref = 100 * max(result["singles"].values())
        title = f"{label} (reference {ref:.2f} %, oracle {100 * result['oracle']:.2f} %)"
        BudgetCurveDisplay.from_rows(
            budget_rows(result), methods=args.methods.split(","), title=title, ax=ax
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(png_bytes(fig, dpi=150))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
