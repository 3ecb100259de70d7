"""The report as a document: sections of text, tables, figures and code blocks, built once
and rendered twice (Markdown, HTML) so the two cannot drift apart."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipfuse.reports import _style

FIGURES_DIR = "figures"


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
