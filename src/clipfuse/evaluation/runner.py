"""Run every method over label budgets and seeds on cached fusion inputs; summarise honestly.

For each (budget, seed): draw the hold-out from the train view, fit each method on it, score it
on the test view. The baseline for gains is the single backbone chosen on that same hold-out
(docs/method.md §5); the backbone that is best on test is shown only as a reference row, and the
oracle only as an upper bound. Nothing is selected, stopped or tuned on test.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from clipfuse.cascade.costs import cost_info
from clipfuse.combiners import BestSingle, oracle_accuracy
from clipfuse.combiners._compose import build_combiner, fit_inputs
from clipfuse.combiners.registry import expand_methods, list_combiners
from clipfuse.data.holdout import HoldoutDraw
from clipfuse.errors import FitError
from clipfuse.evaluation.metrics import topk_accuracy
from clipfuse.evaluation.protocol import add_reference_columns
from clipfuse.logits.bundle import ViewBundle

PREDICT_CHUNK = 4096


@dataclass
class RunRecord:
    """One fitted method on one hold-out draw, scored on test: top-1, the hold-out-chosen
    single backbone it is compared with, fit/predict seconds and method-specific ``info``
    (the chosen backbone, compute per image)."""

    method: str
    budget: str
    seed: int
    num_labels: int
    top1: float
    baseline: str  # the hold-out-chosen single backbone for this draw
    baseline_top1: float
    fit_s: float
    predict_s: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """Everything ``evaluate_methods`` measured on one dataset: per-backbone zero-shot top-1
    (``singles``), the ``oracle`` upper bound, one ``RunRecord`` per (method, budget, seed), the
    hashed hold-out ``draws`` and the run ``config``. ``summary()`` gives the table rows (mean,
    std, gains against the hold-out-chosen backbone, worst seed); ``write_results`` saves it."""

    dataset: str
    train_view: str
    test_view: str
    backbones: list[str]
    singles: dict[str, float]  # test top-1 per backbone (no labels used)
    oracle: float
    records: list[RunRecord]
    draws: list[HoldoutDraw]
    config: dict[str, Any]
    temperatures: dict[str, torch.Tensor] = field(default_factory=dict)  # NLC on test, first draw
    test_labels: torch.Tensor | None = None

    def summary(self) -> list[dict[str, Any]]:
        """One row per single backbone, per (method, budget), plus reference and oracle rows."""
        rows: list[dict[str, Any]] = []
        for name, acc in self.singles.items():
            rows.append(_row(self.dataset, name, "zero-shot", 0, [acc], None, kind="single"))
        best_test = max(self.singles, key=self.singles.get)
        rows.append(
            _row(
                self.dataset,
                f"best single on test ({best_test}; reference only)",
                "-",
                0,
                [self.singles[best_test]],
                None,
                kind="reference",
            )
        )
        rows.append(
            _row(self.dataset, "oracle (upper bound)", "-", 0, [self.oracle], None, kind="oracle")
        )
        groups: dict[tuple[str, str], list[RunRecord]] = {}
        for r in self.records:
            groups.setdefault((r.method, r.budget), []).append(r)
        for (method, budget), recs in groups.items():
            row = _row(
                self.dataset,
                method,
                budget,
                recs[0].num_labels,
                [r.top1 for r in recs],
                [r.baseline_top1 for r in recs],
                kind="method",
                fit_s=float(np.mean([r.fit_s for r in recs])),
                predict_s=float(np.mean([r.predict_s for r in recs])),
                seeds=[r.seed for r in recs],
            )
            for key in ("gflops_per_image", "backbones_per_image"):  # cascades and subsets
                values = [r.info[key] for r in recs if key in r.info]
                row[key] = float(np.mean(values)) if values else None
            unl = [r.info["unlabelled"] for r in recs if "unlabelled" in r.info]
            row["unlabelled"] = int(np.mean(unl)) if unl else None  # train rows given as y = -1
            rows.append(row)
        add_reference_columns(rows, self.singles[best_test], self.oracle)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "train_view": self.train_view,
            "test_view": self.test_view,
            "backbones": self.backbones,
            "singles": self.singles,
            "oracle": self.oracle,
            "summary": self.summary(),
            "records": [asdict(r) for r in self.records],
            "holdouts": [
                {
                    "budget": d.budget,
                    "seed": d.seed,
                    "num_labels": d.num_labels,
                    "content_sha256": d.content_hash,
                    "clamped_classes": d.clamped_classes,
                }
                for d in self.draws
            ],
            "config": self.config,
        }


MIN_RELATIVE_BASELINE = 0.01  # relative gains only against a baseline of >= 1 % top-1 on every seed


def _row(
    dataset,
    method,
    budget,
    labels,
    accs,
    baselines,
    *,
    kind,
    fit_s=None,
    predict_s=None,
    seeds=None,
):
    accs_a = np.asarray(accs, dtype=float)
    row = {
        "dataset": dataset,
        "method": method,
        "kind": kind,
        "budget": budget,
        "labels": labels,
        "n_seeds": len(accs) if kind == "method" else 0,
        "seeds": seeds or [],
        "top1_mean": 100 * float(accs_a.mean()),
        "top1_std": 100 * float(accs_a.std(ddof=1)) if len(accs) > 1 else 0.0,
        "gain_points": None,
        "gain_relative_pct": None,
        "worst_delta_points": None,
        "fit_s": fit_s,
        "predict_s": predict_s,
    }
    if baselines is not None:
        base = np.asarray(baselines, dtype=float)
        delta = accs_a - base
        row["gain_points"] = 100 * float(delta.mean())
        if base.min() >= MIN_RELATIVE_BASELINE:  # else a ratio to ~0: huge, meaningless
            row["gain_relative_pct"] = 100 * float(np.mean(delta / base))
        row["worst_delta_points"] = 100 * float(delta.min())
    return row


CORE_METHODS = list_combiners(group="core")  # static ensembles, calibrated mean, SL, MoE, NLC


def _cost_info(combiner, test: ViewBundle) -> dict[str, Any]:
    """Compute spent per test image (cascades: what they actually ran), chunked like top-1."""
    n = test.labels.numel()
    parts = []
    for start in range(0, n, PREDICT_CHUNK):
        sl = slice(start, min(n, start + PREDICT_CHUNK))
        part = cost_info(
            combiner, [f[sl] for f in test.features], test.logits[:, sl], test.gflops, test.names
        )
        parts.append((sl.stop - sl.start, part))
    info = dict(parts[0][1]) if parts else {}
    for key in ("backbones_per_image", "gflops_per_image"):
        if parts and parts[0][1].get(key) is not None:
            info[key] = sum(m * p[key] for m, p in parts) / max(n, 1)
    return info


def evaluate_methods(
    train: ViewBundle,
    test: ViewBundle,
    methods: list[str],
    budgets: list[tuple[int | None, float | None]],
    seeds: list[int],
    *,
    dataset: str,
    method_params: dict[str, dict[str, Any]] | None = None,
    clamp: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> EvaluationResult:
    """Fit each method on each hold-out draw and score it on test."""
    if train.fingerprints != test.fingerprints:
        raise FitError(
            "train and test views hold different backbones; extract both splits with the same --backbone list"
        )
    if len(train.classnames) != len(test.classnames):
        raise FitError(
            f"class-count mismatch: train has {len(train.classnames)} classes, test {len(test.classnames)}"
        )
    methods = expand_methods(methods)
    method_params = method_params or {}
    singles = {
        name: topk_accuracy(test.logits[b], test.labels) for b, name in enumerate(test.names)
    }
    result = EvaluationResult(
        dataset=dataset,
        train_view=train.view,
        test_view=test.view,
        backbones=list(test.names),
        singles=singles,
        oracle=oracle_accuracy(test.logits, test.labels),
        records=[],
        draws=[],
        test_labels=test.labels,
        config={
            "methods": methods,
            "budgets": [{"shots": s, "fraction": f} for s, f in budgets],
            "seeds": list(seeds),
            "method_params": method_params,
            "device": device,
            "specs": test.specs,
            "classnames": list(test.classnames),
            "gflops": {n: g for n, g in zip(test.names, test.gflops) if g is not None},
            "train_samples": int(train.labels.numel()),
            "test_samples": int(test.labels.numel()),
            "baseline": "single backbone with the best hold-out accuracy (ties: lower NLL), per draw",
            "std": "sample standard deviation over seeds (ddof=1)",
        },
    )
    bar = tqdm(
        total=len(budgets) * len(seeds) * len(methods),
        desc="evaluate",
        unit="fit",
        disable=not progress,
    )
    for shots, fraction in budgets:
        for seed in seeds:
            hold = train.holdout(shots, fraction=fraction, seed=seed, clamp=clamp)
            draw = hold.draw
            result.draws.append(draw)
            # the same rule as the best_single method (ties on tiny hold-outs go to the lower
            # NLL), so the baseline never depends on the order the backbones are listed in
            chosen = BestSingle().fit(None, hold.logits, hold.labels).chosen_
            base_name, base_top1 = test.names[chosen], singles[test.names[chosen]]
            for method in methods:
                combiner = build_combiner(
                    method, method_params.get(method), seed=seed, gflops=train.gflops, device=device
                )  # cascades/subsets get the store's GFLOPs
                *fit_args, fit_info = fit_inputs(combiner, train, hold)
                t0 = time.perf_counter()
                combiner.fit(*fit_args)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                top1 = combiner.score(test.features, test.logits, test.labels)
                predict_s = time.perf_counter() - t0
                chosen_b = combiner.chosen_backbone()
                info = {} if chosen_b is None else {"chosen": test.names[chosen_b]}
                info.update(_cost_info(combiner, test))
                info.update(fit_info)
                info.update(combiner.fit_notes())  # fallbacks and safety-rule choices, recorded
                if method == "nlc" and "nlc" not in result.temperatures:
                    result.temperatures["nlc"] = combiner.predict_temperatures(test.features).cpu()
                result.records.append(
                    RunRecord(
                        method,
                        draw.budget,
                        seed,
                        draw.num_labels,
                        top1,
                        base_name,
                        base_top1,
                        fit_s,
                        predict_s,
                        info,
                    )
                )
                bar.update(1)
    bar.close()
    return result


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The result table as GitHub Markdown (mean ± std, gains in points and relative %)."""

    def num(v, fmt="{:.2f}"):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    costs = any(r.get("gflops_per_image") is not None for r in rows)
    ref = any(r.get("gain_vs_reference_points") is not None for r in rows)
    header = "| method | budget | labels | seeds | top-1 (%) | gain (pts) | gain (rel %) | worst Δ (pts) | fit (s) | predict (s) |"
    header += " GFLOPs/img |" if costs else ""
    header += " vs reference (pts) | oracle gap captured (%) | unlabelled |" if ref else ""
    lines = [header, "|---" * (10 + costs + 3 * ref) + "|"]
    for r in rows:
        acc = f"{r['top1_mean']:.2f}" + (f" ± {r['top1_std']:.2f}" if r["n_seeds"] > 1 else "")
        line = (
            f"| {r['method']} | {r['budget']} | {r['labels'] or ''} | {r['n_seeds'] or ''} | {acc} | "
            f"{num(r['gain_points'], '{:+.2f}')} | {num(r['gain_relative_pct'], '{:+.2f}')} | "
            f"{num(r['worst_delta_points'], '{:+.2f}')} | {num(r['fit_s'], '{:.3f}')} | {num(r['predict_s'], '{:.3f}')} |"
        )
        line += f" {num(r.get('gflops_per_image'), '{:.4f}')} |" if costs else ""
        if ref:
            line += (
                f" {num(r.get('gain_vs_reference_points'), '{:+.2f}')} |"
                f" {num(r.get('oracle_gap_share_pct'), '{:+.1f}')} | {r.get('unlabelled') or ''} |"
            )
        lines.append(line)
    return "\n".join(lines)
