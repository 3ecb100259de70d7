"""Synthetic fusion test bed with KNOWN ground truth: whose backbone is right where.

The input space is split into B regions. Every backbone's features carry the region (a
per-backbone random direction per region, plus noise), so an input-conditioned controller can
read it. Backbone b is "competent" on an input of region b with probability
``p_competent_in_region`` and on other regions with ``p_competent_elsewhere``: a competent
backbone puts a margin on the true class, an incompetent one a larger margin on a random wrong
class (confidently wrong, near-random accuracy). Static ensembles therefore follow the confident
wrong majority, and only weighting backbones by region recovers the labels -- the situation NLC
is designed for, with the right answer known by construction.

Logits mimic CLIP's scale: ``100 * (0.2 + noise + margin)`` (cosines around 0.2).
Used by tests/test_synthetic_testbed.py, tests/test_combiners.py and
benchmarks/bench_combiners.py; other tests import it as ``from synthetic import SyntheticWorld``
(pytest's default "prepend" import mode puts tests/ on sys.path).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SyntheticSplit:
    """One labelled sample set drawn from a world, in the fusion-input contract's layout."""

    features: list[torch.Tensor]  # B x (N, D_b), rows L2-normalised
    logits: torch.Tensor  # (B, N, C) float32
    y: torch.Tensor  # (N,) int64
    region: torch.Tensor  # (N,) int64, the region each input was drawn from
    competent: torch.Tensor  # (B, N) bool, ground truth: which backbones were competent


@dataclass(frozen=True)
class SyntheticWorld:
    """A fixed generative model (seeded by ``seed``); draw train and test splits with ``sample``.

    ``identical=True`` makes every backbone an exact copy of backbone 0 (features and logits).
    """

    num_backbones: int = 3
    num_classes: int = 10
    feature_dims: tuple[int, ...] = ()  # () -> 32 dims per backbone
    p_competent_in_region: float = 0.95
    p_competent_elsewhere: float = 0.0
    competent_margin: float = 0.05
    distractor_margin: float = 0.07
    logit_noise: float = 0.02
    feature_noise: float = 1.0
    logit_scale: float = 100.0
    identical: bool = False
    seed: int = 0

    @property
    def dims(self) -> tuple[int, ...]:
        dims = self.feature_dims or (32,) * self.num_backbones
        if len(dims) != self.num_backbones:
            raise ValueError(f"{len(dims)} feature dims for {self.num_backbones} backbones")
        return dims

    def region_centres(self) -> list[torch.Tensor]:
        """Per backbone, one unit direction per region: (B regions, D_b)."""
        gen = torch.Generator().manual_seed(self.seed)
        return [
            F.normalize(torch.randn(self.num_backbones, d, generator=gen), dim=-1)
            for d in self.dims
        ]

    def sample(
        self, n_per_class: int | None = None, *, n: int | None = None, seed: int
    ) -> SyntheticSplit:
        """``n_per_class`` balanced labels (k-shot style) or ``n`` uniformly random labels."""
        if (n_per_class is None) == (n is None):
            raise ValueError("give exactly one of n_per_class or n")
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1) + self.seed)  # != world's seed
        b, c = self.num_backbones, self.num_classes
        if n_per_class is not None:
            y = torch.arange(c).repeat_interleave(n_per_class)
        else:
            y = torch.randint(0, c, (n,), generator=gen)
        num = y.shape[0]
        region = torch.randint(0, b, (num,), generator=gen)
        made = 1 if self.identical else b
        own = torch.arange(made).view(-1, 1) == region.view(1, -1)  # (made, N)
        p = torch.where(own, self.p_competent_in_region, self.p_competent_elsewhere)
        competent = torch.rand(made, num, generator=gen) < p
        logits = 0.2 + self.logit_noise * torch.randn(made, num, c, generator=gen)
        wrong = (y + torch.randint(1, c, (made, num), generator=gen)) % c  # random wrong class
        target = torch.where(competent, y.expand(made, -1), wrong)
        margin = torch.where(competent, self.competent_margin, self.distractor_margin)
        logits.scatter_add_(2, target.unsqueeze(-1), margin.unsqueeze(-1))
        logits *= self.logit_scale
        centres = self.region_centres()
        features = [
            F.normalize(
                centres[i][region]
                + self.feature_noise * torch.randn(num, d, generator=gen) / d**0.5,
                dim=-1,
            )
            for i, d in enumerate(self.dims[:made])
        ]
        if self.identical:
            features = features * b
            logits = logits.expand(b, -1, -1).contiguous()
            competent = competent.expand(b, -1)
        return SyntheticSplit(features, logits, y, region, competent)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily run torch on ``n`` threads.

    Tests train on tiny tensors, where a second thread only adds synchronisation; on a shared
    2-core machine the spinning threads made such tests 10-40x slower.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
