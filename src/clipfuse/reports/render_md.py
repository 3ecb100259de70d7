"""Markdown rendering of a report document (figures linked as ``figures/<slug>.png``)."""

from __future__ import annotations

from collections.abc import Sequence

from clipfuse.reports.document import FIGURES_DIR, Code, FigureBlock, Section


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
