"""The evaluation table as GitHub Markdown (results.md, the demo's and the README's tables).

Rows hold fractions (``evaluation.schema``); these tables are where they become percent."""

from __future__ import annotations

import math
from typing import Any

from clipfuse.evaluation.schema import pct


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The result table as GitHub Markdown (mean ± std over seeds [bootstrap 95 % interval over
    evaluation images], gains in points and relative %)."""

    def num(v, fmt="{:.2f}"):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    def points(key, fmt="{:+.2f}"):
        return num(pct(r.get(key)), fmt)

    costs = any(r.get("gflops_per_image") is not None for r in rows)
    ref = any(r.get("gain_vs_reference") is not None for r in rows)
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
        acc = f"{pct(r['mean']):.2f}" + (f" ± {pct(r['std']):.2f}" if r["n_seeds"] > 1 else "")
        if r.get("ci_low") is not None:  # bootstrap 95 % interval over evaluation images
            acc += f" [{pct(r['ci_low']):.2f}, {pct(r['ci_high']):.2f}]"
        line = (
            f"| {r['method']}{' (transductive)' if r.get('transductive') else ''} | {r['budget']} | {r['labels'] or ''} | {r['n_seeds'] or ''} | {acc} | "
            f"{points('gain')} | {points('gain_relative')} | "
            f"{points('worst_delta')} | {num(r['fit_s'], '{:.3f}')} | {num(r['predict_s'], '{:.3f}')} |"
        )
        line += f" {num(r.get('gflops_per_image'), '{:.4f}')} |" if costs else ""
        if ref:
            line += (
                f" {points('gain_vs_reference')} |"
                f" {points('worst_vs_reference')} |"
                f" {points('oracle_gap_share', '{:+.1f}')} | {r.get('unlabelled') or ''} |"
            )
        lines.append(line)
    return "\n".join(lines)


COMPACT_METHODS = ("nlc", "mean_logits", "best_single")  # beside the recommended method


def format_compact(rows: list[dict[str, Any]], recommended: str) -> str:
    """The answer to "which classifier, and how much better than my best backbone?" in a few
    columns: zero-shot per backbone and the oracle on one line, then per label budget the
    recommended method, NLC, the mean and the hold-out's best single as gain vs the backbone best on
    the evaluated images (worst seed in brackets), then one line naming the method to use.
    The full table stays in results.md / results.csv."""
    singles = [r for r in rows if r["kind"] == "single"]
    oracle = next((r for r in rows if r["kind"] == "oracle"), None)
    methods = [r for r in rows if r["kind"] == "method"]
    parts = [f"{r['method']} {pct(r['mean']):.2f}" for r in singles]
    if oracle is not None:
        parts.append(f"oracle {pct(oracle['mean']):.2f}")
    lines = ["zero-shot top-1 (%): " + " · ".join(parts)]
    budgets = list(dict.fromkeys(r["budget"] for r in methods))
    shown = [m for m in (recommended, *COMPACT_METHODS) if any(r["method"] == m for r in methods)]
    if not budgets or not shown:
        return "\n".join(lines)
    by_key = {(r["method"], r["budget"]): r for r in methods}
    lines += [
        "",
        "gain vs the best backbone on these images, points (worst seed):",
        "| method | " + " | ".join(budgets) + " |",
        "|---" * (1 + len(budgets)) + "|",
    ]
    for name in shown:
        label = f"**{name}** (recommended)" if name == recommended else name
        if name == "best_single":
            label = "best_single (chosen on the hold-out)"
        cells = []
        for b in budgets:
            r = by_key.get((name, b))
            gain = None if r is None else pct(r.get("gain_vs_reference"))
            cells.append(
                "" if gain is None else f"{gain:+.2f} ({pct(r['worst_vs_reference']):+.2f})"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if singles:
        best = max(singles, key=lambda r: r["mean"])
        lines.append(
            f"\nbest backbone on these images (the reference; chosen with their labels): "
            f"{best['method']}, {pct(best['mean']):.2f} %"
        )
    lines.append(use_line(methods, recommended))
    return "\n".join(lines)


def use_line(methods: list[dict[str, Any]], recommended: str) -> str:
    """One line naming the method to use: the recommended one (chosen on the project's own tuning
    suite, never on these images), with its gain at the largest budget shown here."""
    ours = [r for r in methods if r["method"] == recommended]
    if not ours:
        return f"use: {recommended} (`clipfuse fit` without --method); not evaluated here"
    last = ours[-1]
    gain = pct(last.get("gain_vs_reference"))
    said = "" if gain is None else f": {gain:+.2f} points vs the best backbone at {last['budget']}"
    return f"use: {recommended} (`clipfuse fit` without --method){said}"
