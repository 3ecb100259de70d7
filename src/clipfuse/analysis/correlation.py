"""Does fusion gain more where backbones are more diverse? Correlation across datasets.

docs/method.md §5: relate the NLC gain to the backbones' diversity (mean pairwise
disagreement or JS divergence) across datasets, with Pearson (linear) and Spearman (rank)
coefficients and their two-sided p-values from scipy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clipfuse.errors import DataError

MIN_DATASETS = 3


@dataclass(frozen=True)
class DiversityGainCorrelation:
    """Pearson and Spearman correlation of per-dataset diversity and gain."""

    datasets: list[str]
    diversity: list[float]
    gain: list[float]
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float

    @property
    def n(self) -> int:
        return len(self.datasets)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n}


def diversity_gain_correlation(
    diversity: Mapping[str, float], gain: Mapping[str, float]
) -> DiversityGainCorrelation:
    """Correlate ``diversity[dataset]`` with ``gain[dataset]`` over the datasets in both.

    Needs at least three datasets (with two, any correlation is +-1 and says nothing) and
    non-constant values (a constant has no correlation).
    """
    from scipy import stats  # scipy: the reference implementation of both tests and p-values

    names = sorted(set(diversity) & set(gain))
    if len(names) < MIN_DATASETS:
        raise DataError(
            f"diversity-gain correlation needs >= {MIN_DATASETS} datasets with both numbers, "
            f"got {len(names)}"
        )
    x = np.asarray([float(diversity[k]) for k in names])
    g = np.asarray([float(gain[k]) for k in names])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(g))):
        raise DataError("diversity and gain must be finite numbers")
    if np.ptp(x) == 0 or np.ptp(g) == 0:
        raise DataError("diversity-gain correlation is undefined when either value is constant")
    pearson = stats.pearsonr(x, g)
    spearman = stats.spearmanr(x, g)
    return DiversityGainCorrelation(
        datasets=names,
        diversity=x.tolist(),
        gain=g.tolist(),
        pearson_r=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        spearman_rho=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
    )
