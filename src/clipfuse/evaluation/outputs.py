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

CSV_COLUMNS = [
    "dataset",
    "method",
    "kind",
    "budget",
    "labels",
    "n_seeds",
    "top1_mean",
    "top1_std",
    "top1_ci_low",
    "top1_ci_high",
    "gain_points",
    "gain_relative_pct",
    "worst_delta_points",
    "fit_s",
    "predict_s",
    "gflops_per_image",
    "backbones_per_image",
    "gain_vs_reference_points",
    "worst_vs_reference_points",
    "oracle_gap_share_pct",
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
        "± is the sample std over seeds; worst Δ is the lowest per-seed gain.\n\n"
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
    """Summary rows in the report's evaluation.json schema (accuracies as fractions)."""
    rows = []
    gflops = result.config.get("gflops") or {}
    for r in result.summary():
        if r["kind"] == "reference":
            continue
        shots = r["budget"]
        if shots.endswith("-shot") and shots[0].isdigit():
            shots = int(shots.split("-")[0])
        row = {
            "dataset": r["dataset"],
            "method": r["method"],
            "shots": shots,
            "mean": r["top1_mean"] / 100,
            "std": r["top1_std"] / 100,
            "n_seeds": r["n_seeds"],
            "kind": r["kind"],
        }
        for src, dst in (
            ("gain_points", "gain_points"),
            ("gain_relative_pct", "gain_relative"),
            ("worst_delta_points", "worst_delta"),
            ("fit_s", "fit_s"),
            ("predict_s", "predict_s"),
            ("gain_vs_reference_points", "gain_vs_reference"),
            ("worst_vs_reference_points", "worst_vs_reference"),
            ("oracle_gap_share_pct", "oracle_gap_share"),
            ("unlabelled", "unlabelled"),
        ):
            if r.get(src) is not None:
                row[dst] = r[src]
        if r.get("transductive"):
            row["transductive"] = True
        if r["method"] in gflops:
            row["gflops"] = gflops[r["method"]]
        elif r.get("gflops_per_image") is not None:
            row["gflops"] = r["gflops_per_image"]  # compute actually spent (cascade, subset)
        rows.append(row)
    return rows
