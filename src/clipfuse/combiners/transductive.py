"""Transductive refinement on the evaluated images' own structure (TransCLIP-like, flagged).

TransCLIP (NeurIPS 2024, arXiv 2406.01837) refines a vision-language model's zero-shot
predictions on a whole test batch: a Gaussian mixture over the batch's image features whose
assignments are kept close to the zero-shot ones (a KL term) and, when there are labels, anchored
by the labelled shots. ``transclip`` does the same on top of an inductive base -- the shrunk mix
fitted on the hold-out labels -- with the features of every backbone (each block L2-normalised,
concatenated, scaled to unit norm):

    q_i  = softmax(log p_base(x_i) + strength * loglik_i / D)       (assignments, N x C)
    mu_c = (sum_i q_ic f_i + anchor_weight * n_c m_c) / (sum_i q_ic + anchor_weight * n_c)
    loglik_ic = -||f_i - mu_c||^2 / (2 sigma^2),  sigma^2 the shared per-dimension variance

``m_c`` / ``n_c`` are the hold-out's class means and counts (saved; the hold-out rows are not).
``iterations`` rounds, deterministic, vectorised (N x C x D work per round). Left out of TransCLIP:
its Laplacian (neighbour-affinity) term and per-dimension variances.

Transductive means: ``predict_logits`` of a batch depends on the whole batch. It is never the
default and never "recommended"; tables flag it ``transductive``, ``evaluate`` scores it on the
whole evaluation set at once, and ``predict`` refines over the images given together. A single
image (nothing to refine with) gets the inductive base prediction.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from clipfuse.combiners import weights
from clipfuse.combiners.pool import WeightedPool
from clipfuse.combiners.registry import register_combiner


def batch_features(features: list[torch.Tensor]) -> torch.Tensor:
    """(N, D) every backbone's block L2-normalised, concatenated, scaled to unit norm."""
    blocks = [F.normalize(f.float(), dim=-1) for f in features]
    return torch.cat(blocks, dim=-1) / math.sqrt(len(blocks))


@register_combiner(groups=("transductive",), tier="experimental")
class TransClip(WeightedPool):
    """Shrunk mix on the hold-out, refined per batch by an anchored Gaussian-mixture EM.

    Fitted: ``weights_`` (the inductive base), ``anchor_means_`` (C, D) and ``anchor_counts_`` (C,)
    of the hold-out's features, ``holdout_loss_``.
    """

    name = "transclip"
    rule = staticmethod(weights.shrunk)
    defaults = {"shrinkage": 1.0, "strength": 0.3, "anchor_weight": 1.0, "iterations": 10,
                "max_iter": 100}  # fmt: skip
    uses_features: ClassVar[bool] = True
    transductive: ClassVar[bool] = True

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        fit = weights.shrunk(self, z, y)
        f = batch_features(features)
        onehot = F.one_hot(y, z.shape[-1]).to(f.dtype)
        counts = onehot.sum(0)
        means = (onehot.T @ f) / counts.clamp_min(1).unsqueeze(1)
        fit.tensors.update(anchor_means=means, anchor_counts=counts)
        fit.notes["transductive"] = True
        self._adopt(fit)

    def required_backbones(self) -> list[int]:
        """Every backbone: the refinement reads all their features."""
        self._check_fitted()
        return list(range(self.num_backbones_))

    def refine(self, f: torch.Tensor, log_base: torch.Tensor) -> torch.Tensor:
        """(N, C) log assignments after EM over the batch ``f`` (N, D) from ``log_base``."""
        d = f.shape[1]
        anchor_mass = self.anchor_weight * self.anchor_counts_
        anchor_sum = anchor_mass.unsqueeze(1) * self.anchor_means_
        log_q = log_base
        for _ in range(self.iterations):
            q = log_q.exp()
            mu = (q.T @ f + anchor_sum) / (q.sum(0) + anchor_mass).clamp_min(1e-8).unsqueeze(1)
            # ||f - mu||^2 = |f|^2 - 2 f.mu + |mu|^2, without the (N, C, D) tensor
            dist = (f * f).sum(1, keepdim=True) - 2 * f @ mu.T + (mu * mu).sum(1)
            sigma2 = ((q * dist).sum() / (f.shape[0] * d)).clamp_min(1e-12)
            log_q = torch.log_softmax(log_base - self.strength * dist / (2 * sigma2 * d), -1)
        return log_q

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        base = super()._predict_logits(features, z)
        if z.shape[1] < 2:  # one image: nothing to refine with, the inductive base
            return base
        return self.refine(batch_features(features), torch.log_softmax(base, -1))
