"""Figures of robustness under perturbations and of gain against diversity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from clipfuse.analysis import (
    DiversityGainCorrelation,
)
from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports._style import styled
from clipfuse.reports.displays._base import _pct


class RobustnessDisplay:
    """Accuracy vs perturbation severity: one panel per perturbation, one line per method.

    ``curves`` maps perturbation -> method -> (severities, accuracies).
    """

    def __init__(
        self,
        curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
        *,
        title: str | None = None,
    ) -> None:
        if not curves:
            raise DataError("no robustness curves to draw")
        self.curves = {p: dict(m) for p, m in curves.items()}
        self.methods = list(dict.fromkeys(m for per in self.curves.values() for m in per))
        self.title = title

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        dataset: str | None = None,
        title: str | None = None,
        ax: Axes | np.ndarray | None = None,
    ) -> RobustnessDisplay:
        """From robustness.json records (perturbation, severity, method, accuracy[, dataset])."""
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
        try:
            for r in records:
                if dataset is not None and r.get("dataset") != dataset:
                    continue
                points = curves.setdefault(str(r["perturbation"]), {})
                points.setdefault(str(r["method"]), []).append(
                    (float(r["severity"]), float(r["accuracy"]))
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed robustness record: {exc!r}") from exc
        sorted_curves = {
            p: {m: tuple(map(list, zip(*sorted(pts)))) for m, pts in per.items()}
            for p, per in curves.items()
        }
        return cls(sorted_curves, title=title).plot(ax=ax)

    @styled
    def plot(self, ax: Axes | np.ndarray | None = None) -> RobustnessDisplay:
        n = len(self.curves)
        if ax is None:
            rows = int(np.ceil(n / 4))
            cols = int(np.ceil(n / rows))  # balanced grid: 5 panels -> 2 x 3, not 4 + 1
            fig = _style.new_figure((2.9 * cols + 1.8, 2.5 * rows + 0.5))
            axes = np.asarray(fig.subplots(rows, cols, sharey=True, squeeze=False))
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object))
            if axes.size < n:
                raise DataError(f"need {n} axes (one per perturbation), got {axes.size}")
            fig = axes.flat[0].figure
        flat = list(axes.flat)
        self.lines_: dict[tuple[str, str], Any] = {}
        for a, (pert, per) in zip(flat, self.curves.items()):
            for m_idx, method in enumerate(self.methods):
                if method not in per:
                    continue
                sev, acc = per[method]
                (line,) = a.plot(
                    sev,
                    _pct(acc),
                    color=_style.color(m_idx),
                    marker=_style.marker(m_idx),
                    markersize=4,
                    linewidth=1.3,
                    label=method,
                )
                self.lines_[(pert, method)] = line
            a.set_title(pert)
            a.set_xlabel("severity")
            a.grid(alpha=0.3)
        for a in flat[n:]:
            a.set_visible(False)
        for a in axes[:, 0] if axes.ndim == 2 else flat[:1]:
            a.set_ylabel("accuracy (%)")
        handles = [self.lines_[k] for k in dict.fromkeys(self.lines_)]
        by_method = {h.get_label(): h for h in handles}
        fig.legend(by_method.values(), by_method.keys(), loc="outside right upper", frameon=False)
        fig.suptitle(self.title or "Robustness to image perturbations")
        self.figure_, self.axes_, self.ax_ = fig, axes, flat[0]
        return self


class DiversityGainDisplay:
    """Fusion gain against backbone diversity across datasets, with Pearson and Spearman."""

    def __init__(
        self,
        correlation: DiversityGainCorrelation,
        *,
        diversity_label: str = "mean pairwise disagreement",
        gain_label: str = "NLC gain over best single (points)",
        title: str | None = None,
    ) -> None:
        self.correlation = correlation
        self.diversity_label = diversity_label
        self.gain_label = gain_label
        self.title = title

    @classmethod
    def from_correlation(
        cls, correlation: DiversityGainCorrelation, *, ax: Axes | None = None, **kwargs: Any
    ) -> DiversityGainDisplay:
        return cls(correlation, **kwargs).plot(ax=ax)

    @styled
    def plot(self, ax: Axes | None = None) -> DiversityGainDisplay:
        fig, ax = _style.figure_and_axes(ax, (4.8, 3.6))
        c = self.correlation
        x, g = np.asarray(c.diversity), np.asarray(c.gain)
        self.scatter_ = ax.scatter(x, g, s=36, color=_style.color(0), zorder=3)
        for name, xi, gi in zip(c.datasets, x, g):
            ax.annotate(name, (xi, gi), xytext=(4, 3), textcoords="offset points", fontsize=7)
        slope, intercept = np.polyfit(x, g, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        (self.fit_line_,) = ax.plot(xs, slope * xs + intercept, color=_style.NEUTRAL, ls="--")
        ax.set_xlabel(self.diversity_label)
        ax.set_ylabel(self.gain_label)
        ax.set_title(
            self.title
            or f"Pearson r={c.pearson_r:.2f} (p={c.pearson_p:.2g}), "
            f"Spearman ρ={c.spearman_rho:.2f} (p={c.spearman_p:.2g}), n={c.n}"
        )
        self.figure_, self.ax_ = fig, ax
        return self
