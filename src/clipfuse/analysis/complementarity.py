"""How differently backbones see a dataset: accuracy, oracle, agreement, overlap, diversity.

:func:`analyze_complementarity` reads (B, N, C) logits in sample chunks (bounded memory: only
the (B, N) argmax predictions are kept, plus (B, B) running sums for the JS divergence).
:class:`ComplementarityAccumulator` is the same computation for callers that produce logits
chunk by chunk and never hold them whole (e.g. 50k x 1000 classes x 9 backbones).
Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clipfuse._validation import check_logits, to_tensor
from clipfuse.analysis import agreement as agr
from clipfuse.analysis._arrays import (
    ArrayLike,
    backbone_names,
    check_labels,
    chunk_slices,
    mean_pairwise,
    rows_per_chunk,
)
from clipfuse.analysis.divergence import pairwise_js_sums
from clipfuse.errors import DataError


@dataclass(frozen=True)
class ComplementarityResult:
    """Complementarity of B backbones on one labelled set of N samples.

    ``js_divergence`` / ``mean_js_divergence`` are None when computed from hard predictions.
    ``intersections`` lists (pattern, count), pattern[b] True when backbone b is correct.
    ``unique_correct_count[b]`` samples only backbone b gets right; ``unique_correct`` holds
    their indices (None when loaded from a dict written without indices).
    """

    backbones: list[str]
    n_samples: int
    n_classes: int | None
    accuracy: np.ndarray
    oracle_accuracy: float
    agreement: np.ndarray
    error_overlap: np.ndarray
    unique_correct_count: np.ndarray
    unique_correct: list[np.ndarray] | None
    intersections: list[tuple[tuple[bool, ...], int]]
    mean_disagreement: float
    js_divergence: np.ndarray | None = None
    mean_js_divergence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_backbone(self) -> str:
        """Backbone with the highest accuracy on *this* set (test-chosen when this is test)."""
        return self.backbones[int(np.argmax(self.accuracy))]

    @property
    def best_accuracy(self) -> float:
        return float(np.max(self.accuracy))

    @property
    def oracle_gap(self) -> float:
        """Oracle accuracy minus the best single backbone's accuracy (fraction)."""
        return self.oracle_accuracy - self.best_accuracy

    def to_dict(self, *, include_indices: bool = True) -> dict[str, Any]:
        """JSON-ready dict (the ``complementarity`` entry of analysis.json)."""
        return {
            "backbones": list(self.backbones),
            "n_samples": self.n_samples,
            "n_classes": self.n_classes,
            "accuracy": [float(a) for a in self.accuracy],
            "oracle_accuracy": self.oracle_accuracy,
            "best_backbone": self.best_backbone,
            "best_accuracy": self.best_accuracy,
            "oracle_gap": self.oracle_gap,
            "agreement": self.agreement.tolist(),
            "error_overlap": self.error_overlap.tolist(),
            "unique_correct": {
                name: {
                    "count": int(self.unique_correct_count[i]),
                    **(
                        {"indices": self.unique_correct[i].tolist()}
                        if include_indices and self.unique_correct is not None
                        else {}
                    ),
                }
                for i, name in enumerate(self.backbones)
            },
            "intersections": [
                {"correct": [n for n, hit in zip(self.backbones, pattern) if hit], "count": count}
                for pattern, count in self.intersections
            ],
            "mean_disagreement": self.mean_disagreement,
            "js_divergence": None if self.js_divergence is None else self.js_divergence.tolist(),
            "mean_js_divergence": self.mean_js_divergence,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComplementarityResult:
        """Inverse of :meth:`to_dict` (indices come back empty when they were not stored)."""
        try:
            names = [str(n) for n in d["backbones"]]
            uc = d["unique_correct"]
            js = d.get("js_divergence")
            return cls(
                backbones=names,
                n_samples=int(d["n_samples"]),
                n_classes=None if d.get("n_classes") is None else int(d["n_classes"]),
                accuracy=np.asarray(d["accuracy"], dtype=np.float64),
                oracle_accuracy=float(d["oracle_accuracy"]),
                agreement=np.asarray(d["agreement"], dtype=np.float64),
                error_overlap=np.asarray(d["error_overlap"], dtype=np.float64),
                unique_correct_count=np.asarray([int(uc[n]["count"]) for n in names]),
                unique_correct=(
                    [np.asarray(uc[n]["indices"], dtype=np.int64) for n in names]
                    if all("indices" in uc[n] for n in names)
                    else None
                ),
                intersections=[
                    (tuple(n in set(row["correct"]) for n in names), int(row["count"]))
                    for row in d["intersections"]
                ],
                mean_disagreement=float(d["mean_disagreement"]),
                js_divergence=None if js is None else np.asarray(js, dtype=np.float64),
                mean_js_divergence=(
                    None if d.get("mean_js_divergence") is None else float(d["mean_js_divergence"])
                ),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed complementarity record: {exc!r}") from exc


def complementarity_from_predictions(
    preds: ArrayLike,
    y: ArrayLike,
    backbones: Sequence[str] | None = None,
    *,
    n_classes: int | None = None,
    js_sums: torch.Tensor | None = None,
) -> ComplementarityResult:
    """Complementarity from hard predictions (B, N); ``js_sums`` adds the JS divergence."""
    p = to_tensor(preds).to(torch.int64)
    if p.ndim != 2:
        raise DataError(f"predictions must have shape (backbones, samples), got {tuple(p.shape)}")
    b, n = p.shape
    if n == 0:
        raise DataError("cannot analyse an empty set of samples")
    labels = check_labels(y, n)
    names = backbone_names(backbones, b)
    correct = agr.correctness(p, labels)
    agreement = agr.agreement_matrix(p)
    alone = [idx.numpy() for idx in agr.unique_correct(correct)]
    js = None if js_sums is None else js_sums / n
    return ComplementarityResult(
        backbones=names,
        n_samples=n,
        n_classes=n_classes,
        accuracy=agr.per_backbone_accuracy(correct).numpy(),
        oracle_accuracy=agr.oracle_from_correct(correct),
        agreement=agreement.numpy(),
        error_overlap=agr.error_overlap_matrix(correct).numpy(),
        unique_correct_count=np.asarray([idx.size for idx in alone], dtype=np.int64),
        unique_correct=alone,
        intersections=agr.correct_set_intersections(correct),
        mean_disagreement=agr.mean_pairwise_disagreement(agreement),
        js_divergence=None if js is None else js.numpy(),
        mean_js_divergence=None if js is None else mean_pairwise(js),
    )


class ComplementarityAccumulator:
    """Streaming :func:`analyze_complementarity`: feed (B, n, C) logit chunks, then ``result()``.

    Keeps only argmax predictions and (B, B) JS sums, so memory is O(B N + chunk).
    """

    def __init__(self, backbones: Sequence[str] | None = None, *, js: bool = True) -> None:
        self.backbones = None if backbones is None else list(backbones)
        self.js = js
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._js_sums: torch.Tensor | None = None
        self._shape: tuple[int, int] | None = None  # (B, C)

    def update(self, logits: ArrayLike, y: ArrayLike) -> ComplementarityAccumulator:
        """Add one chunk of logits (B, n, C) with its labels (n,)."""
        b, n, c = check_logits(logits, error=DataError)
        if self._shape is not None and self._shape != (b, c):
            raise DataError(f"chunk has {b} backbones x {c} classes, earlier ones {self._shape}")
        self._shape = (b, c)
        z = to_tensor(logits)
        self._labels.append(check_labels(y, n))
        self._preds.append(z.argmax(dim=-1).to(torch.int64))
        if self.js:
            sums = pairwise_js_sums(z)
            self._js_sums = sums if self._js_sums is None else self._js_sums + sums
        return self

    def result(self) -> ComplementarityResult:
        """The analysis of every chunk seen so far."""
        if self._shape is None:
            raise DataError("no logits were given to the complementarity analysis")
        return complementarity_from_predictions(
            torch.cat(self._preds, dim=1),
            torch.cat(self._labels),
            self.backbones,
            n_classes=self._shape[1],
            js_sums=self._js_sums,
        )


def analyze_complementarity(
    logits: ArrayLike,
    y: ArrayLike,
    backbones: Sequence[str] | None = None,
    *,
    js: bool = True,
    chunk_size: int | None = None,
) -> ComplementarityResult:
    """Complementarity of B backbones from their (B, N, C) logits and labels (N,).

    Processes ``chunk_size`` samples at a time (default: 64 MiB of float32 per chunk);
    ``js=False`` skips the Jensen-Shannon divergence (the only O(B^2 N C) part).
    """
    b, n, c = check_logits(logits, error=DataError)
    labels = check_labels(y, n)
    acc = ComplementarityAccumulator(backbone_names(backbones, b), js=js)
    for sl in chunk_slices(n, rows_per_chunk(b * c, chunk_size)):
        acc.update(logits[:, sl], labels[sl])
    return acc.result()
