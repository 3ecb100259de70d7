"""The evaluation table as GitHub Markdown (results.md, the demo's and the README's tables)."""

from __future__ import annotations

import math
from typing import Any


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The result table as GitHub Markdown (mean ± std over seeds [bootstrap 95 % interval over
    evaluation images], gains in points and relative %)."""

    def num(v, fmt="{:.2f}"):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    costs = any(r.get("gflops_per_image") is not None for r in rows)
    ref = any(r.get("gain_vs_reference_points") is not None for r in rows)
    header = "| method | budget | labels | seeds | top-1 (%) ± std [95 % CI] | gain (pts) | gain (rel %) | worst Δ (pts) | fit (s) | predict (s) |"
    header += " GFLOPs/img |" if costs else ""
    header += (
        " vs reference (pts) | worst seed vs reference (pts) | oracle gap captured (%) |"
        " unlabelled |"
        if ref
        else ""
    )
    lines = [header, "|---" * (10 + costs + 4 * ref) + "|"]
    for r in rows:
        acc = f"{r['top1_mean']:.2f}" + (f" ± {r['top1_std']:.2f}" if r["n_seeds"] > 1 else "")
        if r.get("top1_ci_low") is not None:  # bootstrap 95 % interval over evaluation images
            acc += f" [{r['top1_ci_low']:.2f}, {r['top1_ci_high']:.2f}]"
        line = (
            f"| {r['method']}{' (transductive)' if r.get('transductive') else ''} | {r['budget']} | {r['labels'] or ''} | {r['n_seeds'] or ''} | {acc} | "
            f"{num(r['gain_points'], '{:+.2f}')} | {num(r['gain_relative_pct'], '{:+.2f}')} | "
            f"{num(r['worst_delta_points'], '{:+.2f}')} | {num(r['fit_s'], '{:.3f}')} | {num(r['predict_s'], '{:.3f}')} |"
        )
        line += f" {num(r.get('gflops_per_image'), '{:.4f}')} |" if costs else ""
        if ref:
            line += (
                f" {num(r.get('gain_vs_reference_points'), '{:+.2f}')} |"
                f" {num(r.get('worst_vs_reference_points'), '{:+.2f}')} |"
                f" {num(r.get('oracle_gap_share_pct'), '{:+.1f}')} | {r.get('unlabelled') or ''} |"
            )
        lines.append(line)
    return "\n".join(lines)
