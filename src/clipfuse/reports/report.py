"""Markdown and self-contained HTML reports of a results directory.

:func:`write_report` reads the files described in :mod:`clipfuse.reports.results` and writes
``report.md`` (figures as ``figures/*.png`` beside it) and ``report.html`` (the same content,
figures embedded as base64 PNG, tables sortable by clicking a header; inline CSS and JS, no
external resource). Each section appears only when its input file exists. The report is
built once as a list of blocks and rendered twice, so Markdown and HTML cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipfuse.analysis import diversity_gain_correlation
from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports.displays import (
    AccuracyDisplay,
    AgreementDisplay,
    CKADisplay,
    ClassTemperatureDisplay,
    ComputeDisplay,
    DiversityGainDisplay,
    IntersectionDisplay,
    RobustnessDisplay,
    TemperatureDisplay,
)
from clipfuse.reports.results import (
    DatasetAnalysis,
    Results,
    Temperatures,
    atomic_write_bytes,
    load_results,
)

FIGURES_DIR = "figures"


# --- document model ----------------------------------------------------------------------------


@dataclass
class Cell:
    """A table cell: its text and, for numbers, the value to sort by."""

    text: str
    sort: float | None = None


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class FigureBlock:
    slug: str
    caption: str
    png: bytes
    dpi: int = 150

    @property
    def css_width(self) -> int:
        """Display width in CSS pixels: the figure's size at 100 dpi, not its raster size."""
        width = struct.unpack(">I", self.png[16:20])[0]  # PNG IHDR width
        return round(width * 100 / self.dpi)


@dataclass
class Code:
    text: str


@dataclass
class Section:
    title: str
    level: int = 2
    blocks: list[str | Table | FigureBlock | Code] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def _num(value: Any, fmt: str = "{:.2f}", scale: float = 1.0) -> Cell:
    """Numeric cell; missing or non-numeric values print as an en dash and sort first."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return Cell("–" if value is None else str(value))
    if not np.isfinite(value):
        return Cell("–")
    scaled = value * scale if scale != 1.0 else value
    return Cell(fmt.format(scaled), float(scaled))


def _text(value: Any) -> Cell:
    return Cell("–" if value is None else str(value))


def _figure(slug: str, caption: str, display: Any, dpi: int) -> FigureBlock:
    return FigureBlock(slug, caption, _style.png_bytes(display.figure_, dpi=dpi), dpi)


# --- sections --------------------------------------------------------------------------------


def _slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p).strip("_") for p in parts)


def _pick_shots(rows: list[dict[str, Any]]) -> Any:
    """The shots setting with the most rows (first seen on ties): one setting per figure."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get("shots"))] = counts.get(str(r.get("shots")), 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


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


_EVAL_COLUMNS = (
    ("dataset", "dataset", None, 1.0),
    ("method", "method", None, 1.0),
    ("shots", "shots", None, 1.0),
    ("mean", "accuracy (%)", "{:.2f}", 100.0),
    ("std", "± std", "{:.2f}", 100.0),
    ("gain_points", "gain (points)", "{:+.2f}", 1.0),
    ("gain_relative", "gain (%)", "{:+.2f}", 1.0),
    ("worst_delta", "worst Δ (points)", "{:+.2f}", 1.0),
    ("fit_s", "fit (s)", "{:.3g}", 1.0),
    ("predict_s", "predict (s)", "{:.3g}", 1.0),
    ("n_seeds", "seeds", "{:d}", 1.0),
)


def _evaluation_section(rows: list[dict[str, Any]], protocol: dict[str, Any] | None) -> Section:
    sec = Section("Evaluation")
    sec.blocks.append(
        "Mean ± std over hold-out seeds. Gains are against the best single backbone chosen on "
        "the hold-out; *worst Δ* is the worst seed's difference (negative = fusion lost). "
        "Click a column header in the HTML report to sort."
    )
    table_rows = []
    for row in rows:
        table_rows.append(
            [
                _text(row.get(key)) if fmt is None else _num(row.get(key), fmt, scale)
                for key, _, fmt, scale in _EVAL_COLUMNS
            ]
        )
    sec.blocks.append(Table([c[1] for c in _EVAL_COLUMNS], table_rows, "Methods"))
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
        if row.get("method") == method and row.get("gain_points") is not None:
            if row["dataset"] in analysis:
                groups.setdefault(str(row.get("shots")), {})[row["dataset"]] = row["gain_points"]
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
        sections.append(_evaluation_section(rows, results.protocol))
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


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, intro: str, sections: Sequence[Section]) -> str:
    """Markdown text; figures are linked as ``figures/<slug>.png``."""
    out = [f"# {title}", "", intro, ""]
    for sec in sections:
        out += [f"{'#' * sec.level} {sec.title}", ""]
        for block in sec.blocks:
            if isinstance(block, str):
                out += [block, ""]
            elif isinstance(block, Code):
                out += ["```json", block.text, "```", ""]
            elif isinstance(block, FigureBlock):
                out += [
                    f"![{block.caption}]({FIGURES_DIR}/{block.slug}.png)",
                    "",
                    f"*{block.caption}*",
                    "",
                ]
            else:
                if block.caption:
                    out += [f"**{block.caption}**", ""]
                out.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
                out.append(
                    "|"
                    + "|".join(
                        "--:" if any(row[k].sort is not None for row in block.rows) else ":--"
                        for k in range(len(block.columns))
                    )
                    + "|"
                )
                for row in block.rows:
                    out.append("| " + " | ".join(_md_cell(c.text) for c in row) + " |")
                out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0 auto;max-width:1400px;padding:1.5rem 2rem 4rem;color:#222;line-height:1.45}
h1{border-bottom:2px solid #332288;padding-bottom:.3rem}
h2{margin-top:2.5rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
nav ul{columns:2;padding-left:1.2rem}
.figs{display:flex;flex-wrap:wrap;gap:1.2rem 2rem;align-items:flex-end;margin:1.2rem 0}
figure{margin:0;flex:0 1 auto;max-width:100%;text-align:center}
figure img{max-width:100%;height:auto}
figcaption{font-size:.85rem;color:#555;margin-top:.3rem;max-width:36rem;margin-inline:auto}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
caption{text-align:left;font-weight:600;padding-bottom:.3rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem}
th{background:#f3f3f7;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
pre{background:#f6f6f6;padding:.8rem;overflow:auto;font-size:.85rem}
"""

# Sorting: numeric cells carry data-sort; clicking a header toggles ascending/descending.
# On load the script records how many images decoded, so a headless browser can check.
_JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-sort');
    if (v === null) return cell.textContent.trim().toLowerCase();
    return v === '' ? -Infinity : parseFloat(v);
  }
  document.querySelectorAll('table.sortable th').forEach(function (th) {
    th.addEventListener('click', function () {
      var table = th.closest('table'), body = table.tBodies[0];
      var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a.cells[idx]), y = key(b.cells[idx]);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  window.addEventListener('load', function () {
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
    }
    document.body.setAttribute('data-images', String(imgs.length));
    document.body.setAttribute('data-images-loaded', String(ok));
    document.body.setAttribute('data-report-js', 'ready');
  });
})();
"""


def _html_table(table: Table) -> str:
    e = html.escape
    head = "".join(f'<th scope="col">{e(c)}</th>' for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for c in row:
            if c.sort is not None:
                cells.append(f'<td class="num" data-sort="{c.sort!r}">{e(c.text)}</td>')
            elif c.text == "–":
                cells.append(f'<td class="num" data-sort="">{e(c.text)}</td>')
            else:
                cells.append(f"<td>{e(c.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{e(table.caption)}</caption>" if table.caption else ""
    return (
        f'<table class="sortable">{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _html_inline(text: str) -> str:
    """Escape, then render the report's only inline markup: **bold** and *italic*."""
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", s)


def render_html(title: str, intro: str, sections: Sequence[Section]) -> str:
    """One self-contained HTML page: inline CSS/JS, figures as base64 data URIs."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{_html_inline(intro)}</p>",
    ]
    if sections:
        toc = "".join(f'<li><a href="#{s.anchor}">{e(s.title)}</a></li>' for s in sections)
        parts.append(f"<nav><ul>{toc}</ul></nav>")
    for sec in sections:
        parts.append(f'<h{sec.level} id="{sec.anchor}">{e(sec.title)}</h{sec.level}>')
        in_figs = False
        for block in sec.blocks:
            # Consecutive figures share a wrapping row, side by side where the window allows.
            if isinstance(block, FigureBlock) != in_figs:
                parts.append("</div>" if in_figs else '<div class="figs">')
                in_figs = not in_figs
            if isinstance(block, str):
                parts.append(f"<p>{_html_inline(block)}</p>")
            elif isinstance(block, Code):
                parts.append(f"<pre><code>{e(block.text)}</code></pre>")
            elif isinstance(block, FigureBlock):
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(
                    f'<figure id="fig-{e(block.slug)}"><img alt="{e(block.caption)}" '
                    f'width="{block.css_width}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(block.caption)}</figcaption></figure>"
                )
            else:
                parts.append(_html_table(block))
        if in_figs:
            parts.append("</div>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


@dataclass(frozen=True)
class ReportFiles:
    """The files ``write_report`` wrote: the Markdown report, the self-contained HTML and the
    figure images."""

    markdown: Path
    html: Path
    figures: list[Path]


def write_report(
    results_dir: str | os.PathLike[str],
    *,
    title: str = "clipfuse report",
    top_k: int = 20,
    gain_method: str = "nlc",
    dpi: int = 150,
) -> ReportFiles:
    """Write ``report.md``, ``figures/*.png`` and ``report.html`` into ``results_dir``.

    ``top_k`` bounds the patterns in the intersection plot; ``gain_method`` is the method whose
    gain is correlated with diversity across datasets.
    """
    results = load_results(results_dir)
    found = [
        f
        for f, present in (
            ("analysis.json", results.analysis is not None),
            ("evaluation.json", results.evaluation is not None),
            ("robustness.json", results.robustness is not None),
            ("temperatures.safetensors", results.temperatures is not None),
        )
        if present
    ]
    if not found:
        raise DataError(
            f"{results.root} holds none of analysis.json, evaluation.json, robustness.json, "
            "temperatures.safetensors: nothing to report"
        )
    sections = build_sections(results, top_k=top_k, gain_method=gain_method, dpi=dpi)
    intro = (
        f"Built from {', '.join(found)}. Accuracies are in percent; gains in percentage points "
        "unless marked %."
    )
    root = results.root
    fig_dir = root / FIGURES_DIR
    figures = []
    for sec in sections:
        for block in sec.blocks:
            if isinstance(block, FigureBlock):
                path = fig_dir / f"{block.slug}.png"
                atomic_write_bytes(path, block.png)
                figures.append(path)
    md_path, html_path = root / "report.md", root / "report.html"
    atomic_write_bytes(md_path, render_markdown(title, intro, sections).encode("utf-8"))
    atomic_write_bytes(html_path, render_html(title, intro, sections).encode("utf-8"))
    return ReportFiles(md_path, html_path, figures)
