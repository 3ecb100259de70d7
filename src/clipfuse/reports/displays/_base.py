"""Pieces every Display family shares: percent scaling, the from_predictions/from_combiners
constructors and the annotated heatmap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes

from clipfuse.analysis import (
    analyze_complementarity,
)
from clipfuse.analysis._arrays import ArrayLike
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
