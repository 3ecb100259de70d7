"""Markdown and self-contained HTML reports of a results directory.

:func:`write_report` reads the files described in :mod:`clipfuse.reports.results` and writes
``report.md`` (figures as ``figures/*.png`` beside it) and ``report.html`` (the same content,
figures embedded as base64 PNG, tables sortable by clicking a header; inline CSS and JS, no
external resource). Each section appears only when its input file exists. The report is
built once as a list of blocks and rendered twice, so Markdown and HTML cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clipfuse.errors import DataError
from clipfuse.reports.document import FIGURES_DIR, FigureBlock
from clipfuse.reports.render_html import render_html
from clipfuse.reports.render_md import render_markdown
from clipfuse.reports.results import load_results
from clipfuse.reports.sections import build_sections
from clipfuse.store.atomic import atomic_write_bytes


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
