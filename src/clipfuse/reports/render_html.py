"""Self-contained HTML rendering of a report document: figures embedded as base64 PNG,
tables sortable by clicking a header; CSS and JS inline (package data in ``assets/``), no
external resource."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from importlib import resources

from clipfuse.reports.document import Code, FigureBlock, Section, Table


def _asset(name: str) -> str:
    """Text of a file in ``clipfuse/reports/assets`` (the report's CSS and JS)."""
    return resources.files("clipfuse.reports").joinpath("assets", name).read_text()


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
        f"<title>{e(title)}</title><style>{_asset('report.css')}</style></head><body>",
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
    parts.append(f"<script>{_asset('report.js')}</script></body></html>")
    return "\n".join(parts)
