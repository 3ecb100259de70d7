"""Evaluate combiners on inputs too large for memory, one chunk of samples at a time.

Every combiner's ``predict_logits`` treats rows independently, so a test set is scored by
feeding it chunks (e.g. slices of the store's float16 memmaps): 9 backbones x 50,000 samples x
1,000 classes of float32 logits is 1.8 GB, but a 2,000-sample chunk is 72 MB.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from clipfuse._validation import check_labels, check_logits, to_tensor
from clipfuse.combiners.base import ArrayLike, Combiner, FeaturesLike
from clipfuse.combiners.oracle import oracle_correct

Chunk = tuple[FeaturesLike, ArrayLike, ArrayLike]  # (features, logits (B, n, C), y (n,))

ORACLE = "oracle"


@dataclass
class ChunkedScore:
    """Running totals for one method; ``nll`` is NaN for the oracle (it has no probabilities)."""

    n: int = 0
    correct: int = 0
    nll_sum: float = 0.0
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def nll(self) -> float:
        return self.nll_sum / self.n if self.n else float("nan")


def iter_chunks(
    features: FeaturesLike, logits: ArrayLike, y: ArrayLike, chunk_size: int
) -> Iterator[Chunk]:
    """Slices of in-memory or memory-mapped arrays; nothing is copied until a chunk is used."""
    _, n, _ = check_logits(logits)
    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        feats = None if features is None else [f[sl] for f in features]
        yield feats, logits[:, sl], y[sl]


def evaluate_chunks(
    combiners: Mapping[str, Combiner], chunks: Iterable[Chunk], *, oracle: bool = True
) -> dict[str, ChunkedScore]:
    """Accuracy, NLL and predict time per fitted combiner (plus the oracle) over all chunks."""
    scores = {name: ChunkedScore() for name in combiners}
    if oracle:
        scores[ORACLE] = ChunkedScore(nll_sum=float("nan"))
    for features, logits, y in chunks:
        _, n, c = check_logits(logits)
        check_labels(y, n, c)
        labels = to_tensor(y, torch.int64, "cpu")
        logits = to_tensor(logits)  # store memmaps: tensors out, not numpy
        for name, combiner in combiners.items():
            start = time.perf_counter()
            fused = combiner.predict_logits(features, logits).float().cpu()
            scores[name].seconds += time.perf_counter() - start
            log_p = torch.log_softmax(fused, dim=-1)
            scores[name].n += n
            scores[name].correct += int((fused.argmax(-1) == labels).sum())
            scores[name].nll_sum -= float(log_p.gather(1, labels.view(-1, 1)).sum())
        if oracle:
            start = time.perf_counter()
            scores[ORACLE].correct += int(oracle_correct(logits, labels).sum())
            scores[ORACLE].seconds += time.perf_counter() - start
            scores[ORACLE].n += n
    return scores


def predict_chunks(combiner: Combiner, chunks: Iterable[Chunk]) -> torch.Tensor:
    """(N,) int64 predictions over all chunks, on CPU (labels in the chunks are ignored)."""
    preds = [combiner.predict(features, to_tensor(logits)).cpu() for features, logits, _ in chunks]
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
