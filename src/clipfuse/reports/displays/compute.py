"""Accuracy against compute, with the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence

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
    def from_points(
        cls,
        names: Sequence[str],
        gflops: Sequence[float],
        accuracy: Sequence[float],
        *,
        kinds: Sequence[str] | None = None,
        errors: Sequence[float] | None = None,
        title: str | None = None,
        ax: Axes | None = None,
    ) -> ComputeDisplay:
        """``kinds`` groups points (e.g. "backbone", "fusion"); ``errors`` are accuracy stds."""
        return cls(names, gflops, accuracy, kinds=kinds, errors=errors, title=title).plot(ax=ax)

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
        for name, g, a in zip(self.names, self.gflops, acc):
            ax.annotate(name, (g, a), xytext=(4, 3), textcoords="offset points", fontsize=7)
        self.pareto_ = pareto_indices(self.gflops, self.accuracy)
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
        ax.set_xscale("log")
        ax.set_xlabel("inference GFLOPs per image (log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(self.title or "Accuracy vs compute")
        ax.legend(frameon=False, loc="lower right")
        self.figure_, self.ax_ = fig, ax
        return self
