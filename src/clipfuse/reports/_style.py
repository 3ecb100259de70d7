"""Shared look of every clipfuse figure: colour-blind-safe colours, fonts, Agg canvases.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas instead of
``pyplot``: no global backend switch, no figure registry that leaks memory in long runs, and
the same PNGs on a headless server as on a laptop.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any, TypeVar

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Paul Tol's "muted" qualitative scheme: nine colours distinguishable under the common
# colour-vision deficiencies (one per OpenAI CLIP backbone); markers separate repeats.
PALETTE = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
NEUTRAL = "#777777"
HIGHLIGHT = "#CC6677"
SEQUENTIAL_CMAP = "cividis"  # perceptually uniform and colour-blind safe

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
}

F = TypeVar("F", bound=Callable[..., Any])


def styled(method: F) -> F:
    """Run a ``plot`` method under the clipfuse rcParams (they are read when artists are made)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(RC):
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def marker(i: int) -> str:
    """Marker for series i; with :func:`color` the (colour, marker) pair is unique up to 81."""
    return MARKERS[(i + i // len(PALETTE)) % len(MARKERS)]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on an Agg canvas with constrained (tight) layout."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The caller's axes and its figure, or a fresh single-axes figure."""
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = new_figure(figsize)
    return fig, fig.add_subplot()


def png_bytes(fig: Figure, dpi: int = 150) -> bytes:
    """Render a figure to PNG bytes (Agg) with a tight bounding box."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()
