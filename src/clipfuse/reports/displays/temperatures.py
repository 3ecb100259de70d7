"""Figures of NLC's per-input temperatures: distributions per backbone, means per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes

from clipfuse._validation import to_tensor
from clipfuse.analysis._arrays import ArrayLike, backbone_names, check_labels
from clipfuse.errors import DataError
from clipfuse.reports import _style
from clipfuse.reports._style import styled
from clipfuse.reports.displays._base import _MatrixDisplay


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
        cls, *args: Any, ax: Axes | None = None, **kwargs: Any
    ) -> TemperatureDisplay:
        """The constructor's arguments (temperatures (N, B), backbone names, title), plotted."""
        return cls(*args, **kwargs).plot(ax=ax)

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
