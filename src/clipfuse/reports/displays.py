"""Figures as scikit-learn-style Display objects.

Each ``XxxDisplay`` stores the numbers to draw; a ``from_...`` classmethod computes them from
clipfuse results and calls :meth:`plot`; ``plot(ax=None)`` draws (on a new Agg figure when no
axes is given) and sets ``figure_`` and ``ax_`` plus the artists it made, so that a figure can
be restyled or tested after the fact. Accuracies are fractions and drawn as percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from clipfuse._validation import to_tensor
from clipfuse.analysis import (
    CKAResult,
    ComplementarityResult,
    DiversityGainCorrelation,
    analyze_complementarity,
    cka_matrix,
)
from clipfuse.analysis._arrays import ArrayLike, backbone_names, check_labels
from clipfuse.cascade.curves import pareto_indices
from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports._style import styled


def _pct(x: Any) -> np.ndarray:
    return 100.0 * np.asarray(x, dtype=np.float64)


class _FromPredictions:
    """``from_predictions`` and ``from_combiners`` for displays built from a
    ComplementarityResult (scikit-learn's ``from_predictions`` / ``from_estimator`` idiom):
    the same figure straight from logits, or from fitted combiners scored on the same data."""

    @classmethod
    def from_predictions(
        cls, y: ArrayLike, logits: ArrayLike, names: Sequence[str] | None = None, **kwargs: Any
    ):
        """From labels ``(N,)`` and per-model logits ``(M, N, C)`` (backbones or methods)."""
        return cls.from_result(analyze_complementarity(logits, y, names), **kwargs)

    @classmethod
    def from_combiners(
        cls,
        combiners: Mapping[str, Any],
        features: Sequence[ArrayLike] | None,
        logits: ArrayLike,
        y: ArrayLike,
        **kwargs: Any,
    ):
        """Each fitted combiner's fused logits on ``(features, logits)`` as one model."""
        if not combiners:
            raise DataError("from_combiners needs at least one fitted combiner")
        fused = torch.stack(
            [c.predict_logits(features, logits).float().cpu() for c in combiners.values()]
        )
        return cls.from_predictions(y, fused, list(combiners), **kwargs)


class AccuracyDisplay(_FromPredictions):
    """Bars of per-backbone accuracy, optional fusion methods (mean +- std), oracle line."""

    def __init__(
        self,
        backbones: Sequence[str],
        accuracy: Sequence[float],
        *,
        oracle: float | None = None,
        methods: Mapping[str, tuple[float, float]] | None = None,
        title: str | None = None,
    ) -> None:
        self.backbones = list(backbones)
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.oracle = oracle
        self.methods = dict(methods or {})
        self.title = title

    @classmethod
    def from_result(
        cls,
        result: ComplementarityResult,
        *,
        methods: Mapping[str, tuple[float, float]] | None = None,
        title: str | None = None,
        ax: Axes | None = None,
    ) -> AccuracyDisplay:
        """From a :class:`ComplementarityResult`; ``methods`` maps name -> (mean, std)."""
        disp = cls(
            result.backbones,
            result.accuracy,
            oracle=result.oracle_accuracy,
            methods=methods,
            title=title,
        )
        return disp.plot(ax=ax)

    @styled
    def plot(self, ax: Axes | None = None) -> AccuracyDisplay:
        n_bars = len(self.backbones) + len(self.methods)
        fig, ax = _style.figure_and_axes(ax, (max(4.0, 0.45 * n_bars + 1.5), 3.4))
        best = int(np.argmax(self.accuracy))
        colors = [
            _style.HIGHLIGHT if i == best else _style.color(0) for i in range(len(self.accuracy))
        ]
        x = np.arange(len(self.backbones))
        self.bars_ = ax.bar(x, _pct(self.accuracy), color=colors, label="single backbone")
        self.method_bars_ = None
        if self.methods:
            xm = np.arange(len(self.methods)) + len(self.backbones) + 0.5
            means = _pct([m for m, _ in self.methods.values()])
            stds = _pct([s for _, s in self.methods.values()])
            self.method_bars_ = ax.bar(
                xm, means, yerr=stds, capsize=3, color=_style.color(2), label="fusion (mean ± std)"
            )
            x = np.concatenate([x, xm])
        self.oracle_line_ = None
        if self.oracle is not None:
            self.oracle_line_ = ax.axhline(
                100 * self.oracle,
                color="black",
                linestyle="--",
                linewidth=1.2,
                label=f"oracle {100 * self.oracle:.1f}%",
            )
        ax.set_xticks(x, self.backbones + list(self.methods), rotation=45, ha="right")
        ax.set_ylabel("accuracy (%)")
        top = max([100 * self.oracle if self.oracle is not None else 0.0, *_pct(self.accuracy)])
        ax.set_ylim(0, min(100.0, top * 1.12 + 1) if top < 95 else 100.0)
        ax.set_title(self.title or f"Accuracy per backbone (best: {self.backbones[best]})")
        # Outside the axes: inside, it would hide bars of some height whatever the corner.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        self.figure_, self.ax_ = fig, ax
        return self


class _MatrixDisplay:
    """Heatmap of a matrix with optional value annotations (shared by the matrix figures)."""

    cbar_label = ""
    value_format = "{:.2f}"
    annotate_max = 12  # annotate cells only while the matrix is readable

    def __init__(
        self,
        matrix: ArrayLike,
        col_labels: Sequence[str],
        row_labels: Sequence[str] | None = None,
        *,
        title: str = "",
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.col_labels = list(col_labels)
        self.row_labels = list(row_labels) if row_labels is not None else list(col_labels)
        if self.matrix.shape != (len(self.row_labels), len(self.col_labels)):
            raise DataError(
                f"matrix of shape {self.matrix.shape} does not match "
                f"{len(self.row_labels)} x {len(self.col_labels)} labels"
            )
        self.title = title
        self.vmin, self.vmax = vmin, vmax

    def _figsize(self) -> tuple[float, float]:
        rows, cols = self.matrix.shape
        return (max(3.6, 0.5 * cols + 2.2), min(9.0, max(3.0, 0.42 * rows + 1.6)))

    @styled
    def plot(self, ax: Axes | None = None) -> _MatrixDisplay:
        fig, ax = _style.figure_and_axes(ax, self._figsize())
        rows, cols = self.matrix.shape
        self.im_ = ax.imshow(
            self.matrix,
            cmap=_style.SEQUENTIAL_CMAP,
            vmin=self.vmin,
            vmax=self.vmax,
            aspect="auto" if rows > 3 * cols else "equal",
            interpolation="nearest",
        )
        self.colorbar_ = fig.colorbar(self.im_, ax=ax, label=self.cbar_label, shrink=0.85)
        ax.set_xticks(np.arange(cols), self.col_labels, rotation=45, ha="right")
        step = max(1, int(np.ceil(rows / 40)))
        ax.set_yticks(np.arange(0, rows, step), self.row_labels[::step])
        ax.spines[:].set_visible(False)
        self.text_ = None
        if max(rows, cols) <= self.annotate_max:
            lo, hi = self.im_.get_clim()
            mid = (lo + hi) / 2
            self.text_ = np.empty((rows, cols), dtype=object)
            for i in range(rows):
                for j in range(cols):
                    v = self.matrix[i, j]
                    self.text_[i, j] = ax.text(
                        j,
                        i,
                        self.value_format.format(v),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if v > mid else "white",
                    )
        ax.set_title(self.title)
        self.figure_, self.ax_ = fig, ax
        return self


class AgreementDisplay(_FromPredictions, _MatrixDisplay):
    """Pairwise agreement, error overlap or JS divergence between backbones."""

    _KINDS = {
        "agreement": ("agreement", "fraction of samples with equal predictions", (0.0, 1.0)),
        "error_overlap": ("error_overlap", "fraction of samples both get wrong", (0.0, None)),
        "js_divergence": ("js_divergence", "mean JS divergence (bits)", (0.0, None)),
    }

    @classmethod
    def from_result(
        cls,
        result: ComplementarityResult,
        *,
        kind: str = "agreement",
        title: str | None = None,
        ax: Axes | None = None,
    ) -> AgreementDisplay:
        """``kind``: ``"agreement"``, ``"error_overlap"`` or ``"js_divergence"``."""
        if kind not in cls._KINDS:
            raise DataError(f"unknown matrix kind {kind!r}; choose from {sorted(cls._KINDS)}")
        attr, label, (vmin, vmax) = cls._KINDS[kind]
        matrix = getattr(result, attr)
        if matrix is None:
            raise DataError(f"this result has no {kind} (it was computed without logits)")
        disp = cls(
            matrix,
            result.backbones,
            title=title or label[0].upper() + label[1:],
            vmin=vmin,
            vmax=vmax,
        )
        disp.cbar_label = label
        return disp.plot(ax=ax)


class CKADisplay(_MatrixDisplay):
    """Linear CKA between backbones' representations (1 = same up to rotation and scale)."""

    cbar_label = "linear CKA"

    @classmethod
    def from_result(
        cls, result: CKAResult, *, title: str | None = None, ax: Axes | None = None
    ) -> CKADisplay:
        disp = cls(
            result.matrix,
            result.backbones,
            vmin=0.0,
            vmax=1.0,
            title=title or f"Linear CKA ({result.method}, N={result.n_samples})",
        )
        return disp.plot(ax=ax)

    @classmethod
    def from_features(
        cls,
        features: Sequence[ArrayLike],
        backbones: Sequence[str] | None = None,
        *,
        title: str | None = None,
        ax: Axes | None = None,
        **cka_kwargs: Any,
    ) -> CKADisplay:
        """Compute :func:`clipfuse.analysis.cka_matrix` (keyword arguments pass through)."""
        return cls.from_result(cka_matrix(features, backbones, **cka_kwargs), title=title, ax=ax)


class IntersectionDisplay(_FromPredictions):
    """UpSet-style plot: samples per exact set of backbones that are correct.

    Bars give the count per pattern (largest first); the dot matrix below marks which
    backbones are correct in that pattern (an empty column = no backbone is right).
    """

    def __init__(
        self,
        backbones: Sequence[str],
        patterns: Sequence[Sequence[bool]],
        counts: Sequence[int],
        *,
        n_samples: int | None = None,
        title: str | None = None,
    ) -> None:
        self.backbones = list(backbones)
        self.patterns = np.asarray(patterns, dtype=bool).reshape(len(counts), len(self.backbones))
        self.counts = np.asarray(counts, dtype=np.int64)
        self.n_samples = int(n_samples if n_samples is not None else self.counts.sum())
        self.title = title

    @classmethod
    def from_result(
        cls,
        result: ComplementarityResult,
        *,
        top_k: int = 20,
        title: str | None = None,
        ax: Axes | None = None,
    ) -> IntersectionDisplay:
        """The ``top_k`` most frequent patterns of a :class:`ComplementarityResult`."""
        rows = result.intersections[:top_k]
        disp = cls(
            result.backbones,
            [p for p, _ in rows],
            [c for _, c in rows],
            n_samples=result.n_samples,
            title=title,
        )
        return disp.plot(ax=ax)

    @styled
    def plot(self, ax: Axes | None = None) -> IntersectionDisplay:
        k, b = self.patterns.shape
        if ax is None:
            fig = _style.new_figure((max(5.0, 0.38 * k + 2.5), 2.4 + 0.2 * b))
            grid = fig.add_gridspec(2, 1, height_ratios=[2.0, 0.2 * b + 0.2])
            ax = fig.add_subplot(grid[0])
            mat = fig.add_subplot(grid[1], sharex=ax)
        else:
            fig = ax.figure
            mat = ax.inset_axes((0.0, -0.95, 1.0, 0.85), sharex=ax)
        x = np.arange(k)
        self.bars_ = ax.bar(x, self.counts, color=_style.color(0), width=0.7)
        for xi, c in zip(x, self.counts):
            ax.annotate(
                f"{c}",
                (xi, c),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
            )
        ax.set_ylabel("samples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", bottom=False, labelbottom=False)
        ax.set_title(
            self.title or f"Which backbones are correct together ({self.n_samples} samples)"
        )
        xx, yy = np.meshgrid(x, np.arange(b), indexing="ij")
        on = self.patterns
        mat.scatter(xx[~on], yy[~on], s=22, color="#DDDDDD", zorder=2)
        self.dots_ = mat.scatter(xx[on], yy[on], s=26, color="black", zorder=3)
        for xi in range(k):
            rows = np.flatnonzero(on[xi])
            if rows.size > 1:
                mat.plot([xi, xi], [rows.min(), rows.max()], color="black", lw=1.2, zorder=2)
        mat.set_yticks(np.arange(b), self.backbones)
        mat.set_ylim(b - 0.5, -0.5)
        mat.set_xlim(-0.6, k - 0.4)
        mat.tick_params(axis="x", bottom=False, labelbottom=False)
        mat.spines[:].set_visible(False)
        self.figure_, self.ax_, self.matrix_ax_ = fig, ax, mat
        return self


def _as_temperatures(temperatures: ArrayLike, backbones: Sequence[str] | None):
    t = to_tensor(temperatures, torch.float64)
    if t.ndim != 2:
        raise DataError(f"temperatures must have shape (samples, backbones), got {tuple(t.shape)}")
    return t, backbone_names(backbones, t.shape[1])


class TemperatureDisplay:
    """Distribution of NLC temperatures per backbone (violin + median); lower = more weight."""

    def __init__(
        self,
        temperatures: ArrayLike,
        backbones: Sequence[str] | None = None,
        *,
        title: str | None = None,
    ) -> None:
        t, self.backbones = _as_temperatures(temperatures, backbones)
        self.temperatures = t.numpy()
        self.title = title

    @classmethod
    def from_temperatures(
        cls,
        temperatures: ArrayLike,
        backbones: Sequence[str] | None = None,
        *,
        title: str | None = None,
        ax: Axes | None = None,
    ) -> TemperatureDisplay:
        return cls(temperatures, backbones, title=title).plot(ax=ax)

    @styled
    def plot(self, ax: Axes | None = None) -> TemperatureDisplay:
        b = len(self.backbones)
        fig, ax = _style.figure_and_axes(ax, (max(4.0, 0.55 * b + 1.5), 3.4))
        pos = np.arange(1, b + 1)
        parts = ax.violinplot(
            [self.temperatures[:, i] for i in range(b)],
            positions=pos,
            showmedians=True,
            showextrema=False,
        )
        for i, body in enumerate(parts["bodies"]):
            body.set_facecolor(_style.color(i))
            body.set_edgecolor("black")
            body.set_alpha(0.8)
        parts["cmedians"].set_color("black")
        self.violins_ = parts["bodies"]
        ax.axhline(1.0, color=_style.NEUTRAL, linestyle=":", linewidth=1.0)
        ax.set_xticks(pos, self.backbones, rotation=45, ha="right")
        ax.set_ylabel("temperature t_b(x)")
        ax.set_title(self.title or "NLC temperatures per backbone (lower = more weight)")
        self.figure_, self.ax_ = fig, ax
        return self


class ClassTemperatureDisplay(_MatrixDisplay):
    """Mean NLC temperature per class (rows) and backbone (columns)."""

    cbar_label = "mean temperature"

    @classmethod
    def from_temperatures(
        cls,
        temperatures: ArrayLike,
        y: ArrayLike,
        backbones: Sequence[str] | None = None,
        *,
        class_names: Sequence[str] | None = None,
        title: str | None = None,
        ax: Axes | None = None,
    ) -> ClassTemperatureDisplay:
        """Average temperatures (N, B) over the samples of each class in ``y`` (N,)."""
        t, names = _as_temperatures(temperatures, backbones)
        labels = check_labels(y, t.shape[0])
        n_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
        if int(labels.max()) >= n_classes or int(labels.min()) < 0:
            raise DataError(f"labels must lie in [0, {n_classes}) for the given class names")
        sums = torch.zeros(n_classes, t.shape[1], dtype=torch.float64).index_add_(0, labels, t)
        counts = torch.bincount(labels, minlength=n_classes).to(torch.float64).unsqueeze(1)
        present = counts.squeeze(1) > 0  # a class with no sample has no mean
        rows = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
        means = (sums[present] / counts[present]).numpy()
        disp = cls(
            means,
            names,
            [r for r, keep in zip(rows, present.tolist()) if keep],
            title=title or "Mean NLC temperature per class",
        )
        return disp.plot(ax=ax)


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
