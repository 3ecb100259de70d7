"""What an evaluation run produced: one record per fitted method and draw, and the result
object that turns them into table rows (mean ± std, gains, worst seed, reference columns)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from clipfuse.data.holdout import HoldoutDraw
from clipfuse.evaluation.schema import SCHEMA


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
    # per evaluation image: 1 if predicted right (for the bootstrap interval; not saved)
    correct: np.ndarray | None = field(default=None, repr=False)


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
    single_correct: dict[str, np.ndarray] | None = None  # per backbone, per evaluation image

    def summary(self) -> list[dict[str, Any]]:
        """One row per single backbone, per (method, budget), plus reference and oracle rows;
        accuracies, gains and shares as fractions (``evaluation.schema``)."""
        rows: list[dict[str, Any]] = []
        single_correct = self.single_correct or {}
        for name, acc in self.singles.items():
            row = _row(self.dataset, name, "zero-shot", 0, [acc], None, kind="single")
            _add_interval(row, [single_correct.get(name)])
            rows.append(row)
        best_test = max(self.singles, key=self.singles.get)
        reference = f"best single on test ({best_test}; reference only)"
        for method, acc, kind, correct in (
            (reference, self.singles[best_test], "reference", single_correct.get(best_test)),
            ("oracle (upper bound)", self.oracle, "oracle", None),
        ):
            rows.append(_row(self.dataset, method, "-", 0, [acc], None, kind=kind))
            _add_interval(rows[-1], [correct])
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
            row["transductive"] = any(r.info.get("transductive") for r in recs)
            _add_interval(row, [r.correct for r in recs])
            rows.append(row)
        add_reference_columns(rows, self.singles[best_test], self.oracle)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "dataset": self.dataset,
            "train_view": self.train_view,
            "test_view": self.test_view,
            "backbones": self.backbones,
            "singles": self.singles,
            "oracle": self.oracle,
            "summary": self.summary(),
            "records": [
                {k: v for k, v in asdict(r).items() if k != "correct"} for r in self.records
            ],
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


BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_interval(correct: list[np.ndarray], level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (fractions) of the mean top-1 over seeds, resampling the
    evaluation images (the same resample for every seed, as torchgeo-bench does over its test
    set): how much the figure would move on another draw of images like these."""
    per_image = np.mean(np.stack([np.asarray(c, dtype=float) for c in correct]), axis=0)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, per_image.size, size=(BOOTSTRAP_RESAMPLES, per_image.size))
    means = per_image[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _add_interval(row: dict[str, Any], correct: list[np.ndarray | None]) -> None:
    """``ci_low`` / ``ci_high`` (None when no per-image results were kept)."""
    correct = [c for c in correct if c is not None]
    row["ci_low"], row["ci_high"] = bootstrap_interval(correct) if correct else (None, None)


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
        "shots": int(budget.split("-")[0]) if _is_shots(budget) else budget,
        "mean": float(accs_a.mean()),
        "std": float(accs_a.std(ddof=1)) if len(accs) > 1 else 0.0,
        "worst": float(accs_a.min()),
        "gain": None,
        "gain_relative": None,
        "worst_delta": None,
        "fit_s": fit_s,
        "predict_s": predict_s,
    }
    if baselines is not None:
        base = np.asarray(baselines, dtype=float)
        delta = accs_a - base
        row["gain"] = float(delta.mean())
        if base.min() >= MIN_RELATIVE_BASELINE:  # else a ratio to ~0: huge, meaningless
            row["gain_relative"] = float(np.mean(delta / base))
        row["worst_delta"] = float(delta.min())
    return row


def _is_shots(budget: str) -> bool:
    return budget.endswith("-shot") and budget[0].isdigit()


def add_reference_columns(rows: list[dict[str, Any]], reference: float, oracle: float) -> None:
    """Per method row: gain vs the backbone best on the evaluated set (a reference, not a method),
    its worst seed's gain, and the share of the oracle gap captured (fractions)."""
    for row in rows:
        if row["kind"] != "method":
            continue
        row["gain_vs_reference"] = row["mean"] - reference
        row["worst_vs_reference"] = row["worst"] - reference
        gap = oracle - reference
        row["oracle_gap_share"] = row["gain_vs_reference"] / gap if gap > 0 else None
