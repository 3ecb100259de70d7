"""Gain against the reference backbone over label budgets: the label-efficiency figure.

Why (issue 11): a table of 1 / 4 / 16-shot gains hides the two questions a user asks -- does the
fusion beat simply using the best backbone at *my* budget, and how bad is its worst draw. One
line per method, error bars = the spread over hold-out seeds, a cross at the worst seed,
and the reference (the backbone best on the evaluated images) as the zero line.

With more than ``MAX_LINES`` methods (a report of every method has 15-20) lines are unreadable:
the display switches to one row per method, sorted by the gain at the largest budget, one
marker per budget on a shared gain axis (the zero line still the reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports._style import styled

MAX_LINES = 6  # more methods than this: one row per method instead of one line


class BudgetCurveDisplay:
    """Mean gain vs the reference (points) against shots per class, one line per method.

    ``curves`` maps method -> (shots, mean gain, std, worst-seed gain), each a sequence of equal
    length; gains are in points of top-1 against the backbone best on the evaluated images.
    """

    def __init__(
        self,
        curves: Mapping[
            str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]
        ],
        *,
        title: str | None = None,
        layout: str = "auto",
    ) -> None:
        if layout not in ("auto", "lines", "rows"):
            raise DataError(f"layout must be auto, lines or rows; got {layout!r}")
        if not curves:
            raise DataError("no budget curves to draw (need rows with shots and reference gains)")
        self.curves = {}
        for method, arrays in curves.items():
            shots, mean, std, worst = (np.asarray(a, dtype=np.float64) for a in arrays)
            if not (shots.size == mean.size == std.size == worst.size) or shots.size == 0:
                raise DataError(f"{method}: shots, mean, std and worst must have one equal length")
            if np.any(shots <= 0):
                raise DataError(f"{method}: shots must be positive (drawn on a log axis)")
            order = np.argsort(shots)
            self.curves[method] = (shots[order], mean[order], std[order], worst[order])
        self.title = title
        self.layout = layout if layout != "auto" else (
            "lines" if len(self.curves) <= MAX_LINES else "rows"
        )  # fmt: skip

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        *,
        dataset: str | None = None,
        methods: Sequence[str] | None = None,
        title: str | None = None,
        layout: str = "auto",
        ax: Axes | None = None,
    ) -> BudgetCurveDisplay:
        """From evaluation.json rows (fractions) with integer ``shots`` and ``gain_vs_reference``
        (issue 11's columns); rows of other budgets (a fraction of train) and methods not in
        ``methods`` are skipped."""
        points: dict[str, list[tuple[float, float, float, float]]] = {}
        try:
            for r in rows:
                if dataset is not None and r.get("dataset") != dataset:
                    continue
                if methods is not None and r["method"] not in methods:
                    continue
                shots, gain = r.get("shots"), r.get("gain_vs_reference")
                if not isinstance(shots, int) or isinstance(shots, bool) or gain is None:
                    continue
                worst = r.get("worst_vs_reference", gain)
                std = float(r.get("std") or 0.0)  # top-1 std; the reference is constant
                points.setdefault(str(r["method"]), []).append(  # fractions -> points
                    (float(shots), 100 * float(gain), 100 * std, 100 * float(worst))
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed evaluation row: {exc!r}") from exc
        if methods is not None:
            points = {m: points[m] for m in methods if m in points}
        curves = {m: tuple(map(list, zip(*pts))) for m, pts in points.items()}
        return cls(curves, title=title, layout=layout).plot(ax=ax)  # type: ignore[arg-type]

    @styled
    def plot(self, ax: Axes | None = None) -> BudgetCurveDisplay:
        if self.layout == "rows":
            return self._plot_rows(ax)
        fig, ax = _style.figure_and_axes(ax, (5.6, 3.8))
        self.lines_ = {}
        shots_all = sorted({float(s) for c in self.curves.values() for s in c[0]})
        width = np.log(max(shots_all) / min(shots_all)) if len(shots_all) > 1 else 1.0
        n = len(self.curves)
        for i, (method, (shots, mean, std, worst)) in enumerate(self.curves.items()):
            # spread the methods a little along x so their error bars do not overlap
            x = shots * np.exp(0.03 * width * (i - (n - 1) / 2))
            colour = _style.color(i)
            bars = ax.errorbar(
                x, mean, yerr=std, color=colour, marker=_style.marker(i), markersize=4,
                linewidth=1.2, capsize=2, label=method, zorder=3,
            )  # fmt: skip
            ax.scatter(x, worst, marker="x", s=16, linewidths=1.0, color=colour, zorder=2)
            self.lines_[method] = bars
        ax.scatter(
            [], [], marker="x", s=16, linewidths=1.0, color=_style.NEUTRAL, label="worst seed"
        )
        self.reference_line_ = ax.axhline(
            0.0, color=_style.NEUTRAL, linestyle="--", linewidth=1.0,
            label="reference: best backbone on these images",
        )  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(shots_all, [f"{s:g}" for s in shots_all])
        ax.minorticks_off()
        ax.set_xlabel("labelled images per class (log scale)")
        ax.set_ylabel("top-1 gain vs reference (points)")
        ax.set_title(self.title or "Gain over the best backbone, by label budget")
        ax.legend(
            frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3
        )  # below the axes: the curves fill the panel
        self.figure_, self.ax_ = fig, ax
        return self

    def _plot_rows(self, ax: Axes | None) -> BudgetCurveDisplay:
        """One row per method (best gain at the largest budget on top), one marker per budget:
        mean gain ± std over seeds, a cross at the worst seed, the reference as the zero line."""
        methods = list(self.curves)
        shots_all = sorted({float(s) for c in self.curves.values() for s in c[0]})
        last = shots_all[-1]

        def at_last(m: str) -> float:
            shots, mean = self.curves[m][0], self.curves[m][1]
            return float(mean[shots == last][0]) if np.any(shots == last) else -np.inf

        methods.sort(key=at_last)  # bottom to top: the best ends on top
        fig, ax = _style.figure_and_axes(ax, (5.6, 1.4 + 0.24 * len(methods)))
        step = 0.6 / max(1, len(shots_all) - 1)
        self.lines_ = {m: [] for m in reversed(methods)}
        for j, s in enumerate(shots_all):
            dy = (j - (len(shots_all) - 1) / 2) * step if len(shots_all) > 1 else 0.0
            colour = _style.color(2 * j)
            label = f"{s:g} shot{'s' if s != 1 else ''} per class"
            for row, m in enumerate(methods):
                shots, mean, std, worst = self.curves[m]
                hit = shots == s
                if not np.any(hit):
                    continue
                bars = ax.errorbar(
                    mean[hit], [row + dy], xerr=std[hit], color=colour, marker=_style.marker(j),
                    markersize=4, linestyle="none", capsize=1.5, label=label, zorder=3,
                )  # fmt: skip
                ax.scatter(worst[hit], [row + dy], marker="x", s=14, linewidths=0.9,
                           color=colour, zorder=2)  # fmt: skip
                self.lines_[m].append(bars)
                label = "_nolegend_"
        ax.scatter(
            [], [], marker="x", s=14, linewidths=0.9, color=_style.NEUTRAL, label="worst seed"
        )
        self.reference_line_ = ax.axvline(
            0.0, color=_style.NEUTRAL, linestyle="--", linewidth=1.0,
            label="reference: best backbone on these images",
        )  # fmt: skip
        ax.set_yticks(range(len(methods)), methods, fontsize=7)
        ax.set_ylim(-0.6, len(methods) - 0.4)
        for row in range(1, len(methods), 2):  # banded rows guide the eye across
            ax.axhspan(row - 0.5, row + 0.5, color="#f2f2f2", zorder=0, linewidth=0)
        ax.set_xlabel("top-1 gain vs reference (points)")
        ax.set_title(self.title or "Gain over the best backbone, by label budget")
        ax.legend(
            frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(methods) - 0.06),
            ncol=2,
        )  # fmt: skip
        self.figure_, self.ax_ = fig, ax
        return self
