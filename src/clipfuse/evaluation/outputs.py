"""Write an evaluation as Markdown, CSV and JSON, with its hold-out draws and the command."""

from __future__ import annotations

import csv
import json
import platform
import sys
from pathlib import Path

from safetensors.torch import save_file

from clipfuse.evaluation.runner import EvaluationResult, format_markdown

CSV_COLUMNS = ["dataset", "method", "kind", "budget", "labels", "n_seeds", "top1_mean", "top1_std",
               "gain_points", "gain_relative_pct", "worst_delta_points", "fit_s", "predict_s"]


def write_results(result: EvaluationResult, out_dir: str | Path, command: list[str] | None = None) -> dict[str, Path]:
    """results.{md,csv,json}, holdouts/*.json and (when NLC ran) temperatures.safetensors."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.summary()
    draws = [d.save(out / "holdouts").name for d in result.draws]
    payload = result.to_dict()
    payload["holdout_files"] = draws
    payload["command"] = command or sys.argv
    payload["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                          "processor": platform.processor()}
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
        f"Command: `{' '.join(payload['command'])}`\n\n"
    )
    paths["md"].write_text(header + format_markdown(rows) + "\n")
    if result.temperatures:
        paths["temperatures"] = out / "temperatures.safetensors"
        save_file(
            {"temperatures": result.temperatures["nlc"].contiguous(), "labels": result.test_labels.contiguous()},
            str(paths["temperatures"]),
            metadata={"backbones": json.dumps(result.backbones), "view": result.test_view},
        )
    return paths

