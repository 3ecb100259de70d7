"""The report's sections, built from a results directory (evaluation, analysis, robustness,
temperatures); each appears only when its input exists."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from clipfuse.analysis import diversity_gain_correlation
from clipfuse.errors import DataError
from clipfuse.reports.displays import (
    AccuracyDisplay,
    AgreementDisplay,
    BudgetCurveDisplay,
    CKADisplay,
    ClassTemperatureDisplay,
    ComputeDisplay,
    DiversityGainDisplay,
    IntersectionDisplay,
    RobustnessDisplay,
    TemperatureDisplay,
)
from clipfuse.reports.document import (
    Code,
    FigureBlock,
    Section,
    Table,
    _figure,
    _num,
    _slug,
    _text,
)
from clipfuse.reports.results import (
    DatasetAnalysis,
    Results,
    Temperatures,
)


def _pick_shots(rows: list[dict[str, Any]]) -> Any:
    """The shots setting with the most rows (first seen on ties): one setting per figure."""
    counts = Counter(str(r.get("shots")) for r in rows)
    return counts.most_common(1)[0][0] if counts else None


def _dataset_section(
    name: str, entry: DatasetAnalysis, rows: list[dict[str, Any]], top_k: int, dpi: int
) -> Section:
    r = entry.complementarity
    sec = Section(f"Dataset: {name}")
    js = (
        f", mean pairwise JS divergence {r.mean_js_divergence:.3f} bits"
        if r.mean_js_divergence is not None
        else ""
    )
    sec.blocks.append(
        f"{r.n_samples} samples"
        + (f", {r.n_classes} classes" if r.n_classes else "")
        + f". Best single backbone on this set: **{r.best_backbone}** "
        f"({100 * r.best_accuracy:.2f}%). Oracle (correct if any backbone is): "
        f"**{100 * r.oracle_accuracy:.2f}%**, {100 * r.oracle_gap:.2f} points above the best "
        f"single backbone. Mean pairwise disagreement {r.mean_disagreement:.3f}{js}. "
        "The best backbone here is chosen on the evaluated set itself (an optimistic "
        "reference); fusion methods in the evaluation table choose on the hold-out only."
    )
    gflops = entry.gflops or {}
    columns = ["backbone", "accuracy (%)", "only it is right", "error rate (%)"]
    if gflops:
        columns.append("GFLOPs")
    table_rows = []
    for i, b in enumerate(r.backbones):
        row = [
            _text(b),
            _num(r.accuracy[i], scale=100),
            _num(int(r.unique_correct_count[i]), "{:d}"),
            _num(r.error_overlap[i, i], scale=100),
        ]
        if gflops:
            row.append(_num(gflops.get(b)))
        table_rows.append(row)
    sec.blocks.append(Table(columns, table_rows, "Per-backbone accuracy on the evaluated set"))
    per_class = entry.info.get("per_class")
    if per_class:
        sec.blocks.append(_per_class_table(per_class, r.backbones))

    shots = _pick_shots(rows)
    chosen = [row for row in rows if str(row.get("shots")) == shots]
    methods = {str(row["method"]): (row["mean"], row.get("std") or 0.0) for row in chosen}
    shots_note = f" Fusion methods: shots = {shots}, mean ± std over seeds." if methods else ""
    disp = AccuracyDisplay.from_result(r, methods=methods, title=f"{name}: accuracy")
    sec.blocks.append(
        _figure(
            _slug(name, "accuracy"),
            "Accuracy per backbone (best highlighted) with the oracle as a dashed line."
            + shots_note,
            disp,
            dpi,
        )
    )
    for kind, label, caption in (
        (
            "agreement",
            "agreement",
            "Fraction of samples on which two backbones predict the same class.",
        ),
        (
            "error_overlap",
            "error overlap",
            "Fraction of samples both backbones get wrong (diagonal: error rate).",
        ),
        (
            "js_divergence",
            "JS divergence",
            "Mean Jensen–Shannon divergence of the softmax outputs (bits).",
        ),
    ):
        if getattr(r, kind) is None:
            continue
        disp = AgreementDisplay.from_result(r, kind=kind, title=f"{name}: {label}")
        sec.blocks.append(_figure(_slug(name, kind), caption, disp, dpi))
    if entry.cka is not None:
        disp = CKADisplay.from_result(entry.cka, title=f"{name}: linear CKA ({entry.cka.method})")
        sec.blocks.append(
            _figure(
                _slug(name, "cka"),
                f"Linear CKA between image representations ({entry.cka.method} estimate, "
                f"N={entry.cka.n_samples}); 1 means identical up to rotation and scale.",
                disp,
                dpi,
            )
        )
    disp = IntersectionDisplay.from_result(r, top_k=top_k, title=f"{name}: correct sets")
    sec.blocks.append(
        _figure(
            _slug(name, "intersections"),
            f"Samples per exact set of correct backbones (top {min(top_k, len(r.intersections))} "
            f"of {len(r.intersections)} patterns; an empty column means no backbone is right).",
            disp,
            dpi,
        )
    )
    if gflops and all(b in gflops for b in r.backbones):
        sec.blocks.append(_compute_figure(name, r, gflops, chosen, dpi))
    return sec


def _per_class_table(per_class: list[dict[str, Any]], backbones: list[str]) -> Table:
    """Recall per class and backbone: a class every backbone misses (a name the text towers do
    not know, like `car` for CIFAR-10's automobile) stands out instead of hiding in the mean."""
    rows = []
    for entry in per_class:
        recalls = [entry.get(b) for b in backbones]
        missed = all(v == 0 for v in recalls if v is not None)
        name = _text(f"{entry['class']}{' (no backbone recalls it)' if missed else ''}")
        rows.append([name, _num(entry["n"], "{:d}"), *(_num(v, scale=100) for v in recalls)])
    return Table(
        ["class", "images", *(f"{b} (%)" for b in backbones)],
        rows,
        "Zero-shot recall per class (classes and prompt templates as recorded for this view)",
    )


def _compute_figure(
    name: str, r: Any, gflops: dict[str, float], rows: list[dict[str, Any]], dpi: int
) -> FigureBlock:
    total = sum(gflops[b] for b in r.backbones)
    names = list(r.backbones) + [str(row["method"]) for row in rows]
    cost = [gflops[b] for b in r.backbones] + [float(row.get("gflops") or total) for row in rows]
    acc = list(r.accuracy) + [float(row["mean"]) for row in rows]
    kinds = ["single backbone"] * len(r.backbones) + ["fusion"] * len(rows)
    errors = [0.0] * len(r.backbones) + [float(row.get("std") or 0.0) for row in rows]
    disp = ComputeDisplay.from_points(
        names, cost, acc, kinds=kinds, errors=errors, title=f"{name}: accuracy vs compute"
    )
    return _figure(
        _slug(name, "compute"),
        "Accuracy against image-encoder GFLOPs; fusion methods run every backbone "
        f"({total:.1f} GFLOPs) unless their row states otherwise. Dashed: Pareto front.",
        disp,
        dpi,
    )


_EVAL_COLUMNS = (  # rows hold fractions (evaluation.schema); the table shows percent / points
    ("dataset", "dataset", None, 1.0),
    ("method", "method", None, 1.0),
    ("shots", "shots", None, 1.0),
    ("mean", "accuracy (%)", "{:.2f}", 100.0),
    ("std", "± std", "{:.2f}", 100.0),
    ("gain", "gain (points)", "{:+.2f}", 100.0),
    ("gain_relative", "gain (%)", "{:+.2f}", 100.0),
    ("worst_delta", "worst Δ (points)", "{:+.2f}", 100.0),
    ("gain_vs_reference", "vs reference (points)", "{:+.2f}", 100.0),
    ("worst_vs_reference", "worst seed vs reference", "{:+.2f}", 100.0),
    ("oracle_gap_share", "oracle gap (%)", "{:+.1f}", 100.0),
    ("fit_s", "fit (s)", "{:.3g}", 1.0),
    ("predict_s", "predict (s)", "{:.3g}", 1.0),
    ("n_seeds", "seeds", "{:d}", 1.0),
)


def _budget_figures(rows: list[dict[str, Any]], dpi: int) -> list[FigureBlock]:
    """Per dataset with reference columns at two or more shot budgets: the gain-vs-budget figure."""
    figures = []
    for name in dict.fromkeys(str(r.get("dataset")) for r in rows):
        mine = [
            r for r in rows
            if str(r.get("dataset")) == name and r.get("kind", "method") == "method"
            and r.get("gain_vs_reference") is not None and isinstance(r.get("shots"), int)
        ]  # fmt: skip
        if len({r["shots"] for r in mine}) < 2:
            continue
        title = f"{name}: gain over the best backbone, by label budget"
        disp = BudgetCurveDisplay.from_rows(mine, title=title)
        caption = (
            f"{name}: mean top-1 gain (points) against the backbone best on the evaluated images "
            "(dashed zero line; a reference, not a method), ± std over hold-out seeds; "
            "crosses: the worst seed."
        )
        figures.append(_figure(_slug(name, "budgets"), caption, disp, dpi))
    return figures


def _evaluation_section(
    rows: list[dict[str, Any]], protocol: dict[str, Any] | None, dpi: int = 150
) -> Section:
    sec = Section("Evaluation")
    sec.blocks.append(
        "Mean ± std over hold-out seeds. Gains are against the best single backbone chosen on "
        "the hold-out; *worst Δ* is the worst seed's difference (negative = fusion lost). "
        "*vs reference* is against the backbone best on the evaluated images (it needs their "
        "labels, so it is a yardstick, not a method); *oracle gap* is the share of the distance "
        "from that reference to the oracle that the method captures. "
        "Click a column header in the HTML report to sort."
    )
    table_rows = []
    for row in rows:
        method = _text(
            f"{row.get('method')} (transductive)" if row.get("transductive") else row.get("method")
        )
        table_rows.append(
            [
                method
                if key == "method"
                else _text(row.get(key))
                if fmt is None
                else _num(row.get(key), fmt, scale)
                for key, _, fmt, scale in _EVAL_COLUMNS
            ]  # fmt: skip
        )
    sec.blocks.append(Table([c[1] for c in _EVAL_COLUMNS], table_rows, "Methods"))
    sec.blocks.extend(_budget_figures(rows, dpi))
    if protocol:
        sec.blocks.append("Protocol (splits, seeds and hyperparameters as recorded):")
        sec.blocks.append(Code(json.dumps(protocol, indent=2, sort_keys=True)))
    return sec


def _diversity_gain_section(
    analysis: dict[str, DatasetAnalysis], rows: list[dict[str, Any]], method: str, dpi: int
) -> Section | None:
    """Correlation of diversity and ``method``'s gain across datasets, per shots setting."""
    groups: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.get("method") == method and row.get("gain") is not None:
            if row["dataset"] in analysis:
                points = 100 * row["gain"]
                groups.setdefault(str(row.get("shots")), {})[row["dataset"]] = points
    groups = {s: g for s, g in groups.items() if len(g) >= 3}
    if not groups:
        return None
    sec = Section(f"Diversity vs {method} gain")
    sec.blocks.append(
        f"Across datasets, is the {method} gain (points over the best single backbone) larger "
        "where backbones disagree more? Pearson (linear) and Spearman (rank) correlation with "
        "two-sided p-values; with few datasets these are weak evidence."
    )
    measures = {
        "mean disagreement": {k: a.complementarity.mean_disagreement for k, a in analysis.items()},
        "mean JS divergence": {
            k: a.complementarity.mean_js_divergence
            for k, a in analysis.items()
            if a.complementarity.mean_js_divergence is not None
        },
    }
    table_rows = []
    for shots, gain in groups.items():
        for label, diversity in measures.items():
            try:
                corr = diversity_gain_correlation(diversity, gain)
            except DataError as exc:
                sec.blocks.append(f"shots = {shots}, {label}: not computed ({exc}).")
                continue
            table_rows.append(
                [
                    _text(shots),
                    _text(label),
                    _num(corr.n, "{:d}"),
                    _num(corr.pearson_r),
                    _num(corr.pearson_p, "{:.3g}"),
                    _num(corr.spearman_rho),
                    _num(corr.spearman_p, "{:.3g}"),
                ]
            )
            if label == "mean disagreement":
                disp = DiversityGainDisplay.from_correlation(
                    corr, gain_label=f"{method} gain over best single (points)"
                )
                sec.blocks.append(
                    _figure(
                        _slug("diversity_gain", shots),
                        f"{method} gain against mean pairwise disagreement (shots = {shots}).",
                        disp,
                        dpi,
                    )
                )
    if table_rows:
        sec.blocks.append(
            Table(
                ["shots", "diversity", "datasets", "Pearson r", "p", "Spearman ρ", "p"],
                table_rows,
                "Diversity–gain correlation",
            )
        )
    return sec


def _robustness_section(records: list[dict[str, Any]], dpi: int) -> Section:
    sec = Section("Robustness")
    sec.blocks.append(
        "Accuracy under image perturbations of growing severity (severity 0 = clean), one "
        "panel per perturbation and one line per backbone or fusion method."
    )
    datasets = list(dict.fromkeys(str(r.get("dataset", "all")) for r in records))
    for name in datasets:
        subset = [r for r in records if str(r.get("dataset", "all")) == name]
        disp = RobustnessDisplay.from_records(subset, title=f"{name}: robustness")
        sec.blocks.append(
            _figure(_slug(name, "robustness"), f"{name}: accuracy vs severity.", disp, dpi)
        )
    return sec


def _temperature_section(temps: dict[str, Temperatures], dpi: int) -> Section:
    sec = Section("NLC temperatures")
    sec.blocks.append(
        "The controller divides each backbone's logits by a per-input temperature: a lower "
        "temperature gives that backbone more weight on that input."
    )
    for name, t in temps.items():
        columns = ["backbone", "mean", "median", "5th pct", "95th pct"]
        rows = []
        for i, b in enumerate(t.backbones):
            q = np.percentile(t.temperatures[:, i], [50, 5, 95])
            rows.append(
                [_text(b), _num(float(t.temperatures[:, i].mean()), "{:.3f}")]
                + [_num(float(v), "{:.3f}") for v in q]
            )
        sec.blocks.append(Table(columns, rows, f"{name}: temperature per backbone"))
        disp = TemperatureDisplay.from_temperatures(
            t.temperatures, t.backbones, title=f"{name}: NLC temperatures"
        )
        sec.blocks.append(
            _figure(_slug(name, "temperatures"), f"{name}: temperature distributions.", disp, dpi)
        )
        disp = ClassTemperatureDisplay.from_temperatures(
            t.temperatures,
            t.labels,
            t.backbones,
            class_names=t.class_names,
            title=f"{name}: mean temperature per class",
        )
        sec.blocks.append(
            _figure(
                _slug(name, "class_temperatures"),
                f"{name}: mean temperature per class (rows) and backbone (columns).",
                disp,
                dpi,
            )
        )
    return sec


def build_sections(
    results: Results, *, top_k: int = 20, gain_method: str = "nlc", dpi: int = 150
) -> list[Section]:
    """Every report section whose input exists, in reading order."""
    rows = results.evaluation or []
    sections = []
    for name, entry in (results.analysis or {}).items():
        # fusion figures show fitted methods only: single-backbone, oracle and reference rows
        # of evaluation.json are already drawn from the analysis itself
        ds_rows = [
            r for r in rows if r.get("dataset") == name and r.get("kind", "method") == "method"
        ]
        sections.append(_dataset_section(name, entry, ds_rows, top_k, dpi))
    if results.evaluation is not None:
        sections.append(_evaluation_section(rows, results.protocol, dpi))
    if results.analysis and rows:
        section = _diversity_gain_section(results.analysis, rows, gain_method, dpi)
        if section is not None:
            sections.append(section)
    if results.robustness:
        sections.append(_robustness_section(results.robustness, dpi))
    if results.temperatures:
        sections.append(_temperature_section(results.temperatures, dpi))
    return sections


# --- rendering -------------------------------------------------------------------------------
