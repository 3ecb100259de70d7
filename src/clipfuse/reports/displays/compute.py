"""Accuracy against compute, with the Pareto front.

Fusions all run every backbone, so they share one x and sit within a point or two of each
other: their labels are stacked in a column beside the cluster (one text line apart, in
accuracy order) with a thin leader line to each point, instead of being drawn on top of one
another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from clipfuse.cascade.curves import pareto_indices
from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports._style import styled
from clipfuse.reports.displays._base import _pct


class ComputeDisplay:
    """Accuracy against inference GFLOPs with the Pareto front (single backbones and fusions)."""

    def __init__(
        self,
        names: Sequence[str],
        gflops: Sequence[float],
        accuracy: Sequence[float],
        *,
        kinds: Sequence[str] | None = None,
        errors: Sequence[float] | None = None,
        title: str | None = None,
    ) -> None:
        self.names = list(names)
        self.gflops = np.asarray(gflops, dtype=np.float64)
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.kinds = list(kinds) if kinds is not None else ["backbone"] * len(self.names)
        self.errors = None if errors is None else np.asarray(errors, dtype=np.float64)
        if not (len(self.names) == self.gflops.size == self.accuracy.size == len(self.kinds)):
            raise DataError("names, gflops, accuracy and kinds must have the same length")
        if np.any(self.gflops <= 0):
            raise DataError("GFLOPs must be positive (they are drawn on a log axis)")
        self.title = title

    @classmethod
    def from_points(cls, *args: Any, ax: Axes | None = None, **kwargs: Any) -> ComputeDisplay:
        """The constructor's arguments, plotted: ``kinds`` groups points (e.g. "backbone",
        "fusion"); ``errors`` are accuracy stds."""
        return cls(*args, **kwargs).plot(ax=ax)

    @styled
    def plot(self, ax: Axes | None = None) -> ComputeDisplay:
        fig, ax = _style.figure_and_axes(ax, (5.6, 3.8))
        acc = _pct(self.accuracy)
        self.scatter_ = []
        for g, kind in enumerate(dict.fromkeys(self.kinds)):
            sel = np.asarray([k == kind for k in self.kinds])
            self.scatter_.append(
                ax.scatter(
                    self.gflops[sel],
                    acc[sel],
                    s=36,
                    color=_style.color(2 * g),
                    marker=_style.MARKERS[g % len(_style.MARKERS)],
                    label=kind,
                    zorder=3,
                )
            )
            if self.errors is not None:
                ax.errorbar(
                    self.gflops[sel],
                    acc[sel],
                    yerr=_pct(self.errors[sel]),
                    fmt="none",
                    ecolor=_style.color(2 * g),
                    capsize=2,
                    zorder=2,
                )
        self.pareto_ = pareto_indices(self.gflops, self.accuracy)
        ax.set_xscale("log")
        ax.autoscale_view()
        self.labels_ = _place_labels(ax, self.names, self.gflops, acc)
        (self.pareto_line_,) = ax.plot(
            self.gflops[self.pareto_],
            acc[self.pareto_],
            drawstyle="steps-post",
            color=_style.NEUTRAL,
            linestyle="--",
            linewidth=1.0,
            label="Pareto front",
            zorder=1,
        )
        ax.set_xlabel("inference GFLOPs per image (log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(self.title or "Accuracy vs compute")
        ax.legend(  # below the axes: the labels use the panel's corners
            frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3
        )
        self.figure_, self.ax_ = fig, ax
        return self


CLUSTER_PX = 24.0  # points closer than this along x share one label column


def _place_labels(ax: Axes, names: list[str], x: np.ndarray, y: np.ndarray) -> list[Any]:
    """One annotation per point. Points whose x lie within CLUSTER_PX of each other get their
    labels stacked one text line apart, in y order, beside the cluster (left of it near the
    right edge), each joined to its point by a thin leader line: a by-hand adjustText for the
    one case this figure has, many methods at one compute."""
    fig = ax.figure
    fontsize = 7.0
    line_px = 1.25 * fontsize * fig.dpi / 72
    pts = ax.transData.transform(np.column_stack([x, y]))
    box = ax.get_window_extent()
    order = np.argsort(pts[:, 0], kind="stable")
    clusters: list[list[int]] = []
    for i in order:
        if clusters and pts[i, 0] - pts[clusters[-1][-1], 0] <= CLUSTER_PX:
            clusters[-1].append(int(i))
        else:
            clusters.append([int(i)])
    labels = []
    for members in clusters:
        members.sort(key=lambda i: pts[i, 1])
        placed = _spread(pts[members, 1], line_px)
        placed += max(0.0, box.y0 + line_px / 2 - placed[0])  # inside the axes
        placed -= max(0.0, placed[-1] - (box.y1 - line_px / 2))
        left = pts[members[0], 0] > box.x0 + 0.7 * box.width
        stacked = len(members) > 1
        for i, ly in zip(members, placed):
            dx = (-24.0 if stacked else -5.0) if left else (24.0 if stacked else 5.0)
            offset = (dx * 72 / fig.dpi, (ly - pts[i, 1]) * 72 / fig.dpi)
            labels.append(
                ax.annotate(
                    names[i],
                    (x[i], y[i]),
                    xytext=offset if stacked else (offset[0], 3.0),
                    textcoords="offset points",
                    fontsize=fontsize,
                    ha="right" if left else "left",
                    va="center" if stacked else "bottom",
                    bbox=(  # readable where a Pareto step or error bar passes behind it
                        {"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.8}
                        if stacked
                        else None
                    ),
                    arrowprops=(
                        {
                            "arrowstyle": "-",
                            "color": _style.NEUTRAL,
                            "linewidth": 0.5,
                            "relpos": (1.0, 0.5) if left else (0.0, 0.5),  # from the text's end
                        }
                        if stacked
                        else None
                    ),
                )
            )
    return labels


def _spread(target: np.ndarray, gap: float) -> np.ndarray:
    """Positions as close as possible (least squares) to sorted `target` with consecutive ones
    at least `gap` apart: isotonic regression of ``target - k * gap`` (scipy's), so a lone point
    keeps its label beside it while a dense cluster fans out around its centre."""
    from scipy.optimize import isotonic_regression

    steps = gap * np.arange(len(target))
    return isotonic_regression(target - steps).x + steps
