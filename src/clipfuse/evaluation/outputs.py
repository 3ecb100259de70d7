"""Write an evaluation as Markdown, CSV and JSON, with its hold-out draws and the command."""

from __future__ import annotations

import csv
import json
import platform
import shlex
import sys
from pathlib import Path

from clipfuse.evaluation.records import EvaluationResult
from clipfuse.evaluation.tables import format_markdown
from clipfuse.paths import ensure_dir
from clipfuse.reports.results import save_evaluation, save_temperatures

CSV_COLUMNS = [  # the summary's schema (evaluation.schema): accuracies and gains as fractions
    "dataset",
    "method",
    "kind",
    "budget",
    "labels",
    "n_seeds",
    "mean",
    "std",
    "worst",
    "ci_low",
    "ci_high",
    "gain",
    "gain_relative",
    "worst_delta",
    "fit_s",
    "predict_s",
    "gflops_per_image",
    "backbones_per_image",
    "gain_vs_reference",
    "worst_vs_reference",
    "oracle_gap_share",
    "unlabelled",
    "transductive",
]


def write_results(
    result: EvaluationResult,
    out_dir: str | Path,
    command: list[str] | None = None,
    report_dir: str | Path | None = None,
) -> dict[str, Path]:
    """results.{md,csv,json} and holdouts/*.json in `out_dir`; the report's evaluation.json (+ NLC
    temperatures.safetensors when NLC ran) in `report_dir` (default `out_dir`), merged per dataset
    so several datasets can share one report folder."""
    out = Path(out_dir)
    report = Path(report_dir) if report_dir is not None else out
    ensure_dir(out, "results folder")
    rows = result.summary()
    draws = [d.save(out / "holdouts").name for d in result.draws]
    payload = result.to_dict()
    payload["holdout_files"] = draws
    payload["command"] = command or sys.argv
    payload["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
    paths["json"].write_text(json.dumps(payload, indent=1))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    header = (
        f"# {result.dataset}: {len(result.backbones)} backbones, train view `{result.train_view}`, "
        f"test view `{result.test_view}`\n\n"
        f"Seeds: {result.config['seeds']}. Gains are against the single backbone chosen on each hold-out; "
        "± is the sample std over seeds; worst Δ is the lowest per-seed gain. "
        "Top-1 and gains in percent here; results.json and results.csv hold fractions.\n\n"
        f"Command: `{shlex.join(payload['command'])}`\n\n"
    )
    paths["md"].write_text(header + format_markdown(rows) + "\n")
    paths["evaluation"] = save_evaluation(
        report,
        report_rows(result),
        protocol={
            **{k: v for k, v in result.config.items() if k not in ("method_params", "classnames")},
            "method_params": json.dumps(result.config.get("method_params", {})),
            "command": shlex.join(payload["command"]),
        },
    )
    if result.temperatures:
        paths["temperatures"] = save_temperatures(
            report,
            result.dataset,
            result.temperatures["nlc"],
            result.test_labels,
            result.backbones,
            class_names=result.config.get("classnames"),
        )
    return paths


def report_rows(result: EvaluationResult) -> list[dict]:
    """The summary rows the report's evaluation.json holds: the same schema, without the
    reference row, plus ``gflops`` (a backbone's own, or what a method spent per image)."""
    rows = []
    gflops = result.config.get("gflops") or {}
    for r in result.summary():
        if r["kind"] == "reference":
            continue
        if r["method"] in gflops:
            r["gflops"] = gflops[r["method"]]
        elif r.get("gflops_per_image") is not None:
            r["gflops"] = r["gflops_per_image"]  # compute actually spent (cascade, subset)
        rows.append({k: v for k, v in r.items() if v is not None and v is not False})
    return rows
