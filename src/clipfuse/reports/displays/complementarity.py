"""Figures of how backbones differ: per-backbone accuracy, pairwise matrices, CKA, UpSet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from clipfuse.analysis import (
    CKAResult,
    ComplementarityResult,
    cka_matrix,
)
from clipfuse.analysis._arrays import ArrayLike
from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports._style import styled
from clipfuse.reports.displays._base import _FromPredictions, _MatrixDisplay, _pct


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
