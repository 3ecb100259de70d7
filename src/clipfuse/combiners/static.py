"""Static ensembles: no input-conditioned weights (docs/method.md §4, the baselines NLC must beat).

The learned ones (best_single, calibrated_mean, super_learner) are presets of the weighted pool.

All of them read only the logits, so ``features`` may be ``None``.
"""

from __future__ import annotations

import math

import torch

from clipfuse.combiners import weights
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.pool import preset
from clipfuse.combiners.registry import register_combiner

BestSingle = register_combiner(
    preset(
        "best_single",
        weights.best_single,
        """The one backbone with the highest accuracy on the hold-out given to ``fit`` (ties: lower
        NLL); chosen on the hold-out, never on test (docs/method.md §5). Fitted: ``chosen_``,
        ``holdout_accuracy_`` and ``holdout_nll_`` (B,).""",
        min_per_class=0,
        module=__name__,
    ),
    groups=("core", "weighted"),
)


@register_combiner(groups=("core", "label-free"))
class MeanLogits(Combiner):
    """Average of the backbones' logits."""

    name = "mean_logits"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return z.mean(dim=0)


@register_combiner(groups=("core", "label-free"))
class MeanProba(Combiner):
    """Average of the backbones' softmax probabilities; returns log(mean p) as its logits."""

    name = "mean_proba"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        # log-sum-exp over backbones of log-probabilities: stable even for peaked softmaxes.
        return torch.logsumexp(torch.log_softmax(z, dim=-1), dim=0) - math.log(z.shape[0])


@register_combiner(groups=("core", "label-free"))
class MajorityVote(Combiner):
    """Each backbone votes for its argmax; ties are broken by the summed probability.

    Score per class = votes + 0.5 * mean probability. The probability term is < 1 vote, so it
    only ever decides between classes with equal votes; ordering by mean or by summed probability
    is the same. ``predict_proba`` = score / (B + 0.5): vote share, smoothed by the probabilities
    so it is never exactly 0 (a finite NLL).
    """

    name = "majority_vote"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        b, _, c = z.shape
        votes = torch.nn.functional.one_hot(z.argmax(dim=-1), c).sum(dim=0).float()
        score = votes + 0.5 * torch.softmax(z, dim=-1).mean(dim=0)
        return torch.log((score / (b + 0.5)).clamp_min(torch.finfo(score.dtype).tiny))


@register_combiner(groups=("core", "label-free"))
class MaxConfidence(Combiner):
    """Per input, the logits of the backbone whose top softmax probability is highest."""

    name = "max_confidence"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        log_conf = z.amax(dim=-1) - torch.logsumexp(z, dim=-1)  # (B, N) log max-probability
        pick = log_conf.argmax(dim=0)  # (N,)
        return z[pick, torch.arange(z.shape[1], device=z.device)]


CalibratedMean = register_combiner(
    preset(
        "calibrated_mean",
        weights.calibrated,
        """Mean of ``z_b / T_b``, one temperature per backbone fitted by NLL (L-BFGS on ``log T``).
        Fitted: ``temperatures_`` (B,), ``holdout_nll_``.""",
        module=__name__,
        max_iter=100,
    ),
    groups=("core", "weighted"),
)
SuperLearner = register_combiner(
    preset(
        "super_learner",
        weights.super_learner,
        """``sum_b w_b z_b`` with ``w_b = softplus(a_b) >= 0`` fitted by cross-entropy: the
        input-independent counterpart of NLC on the same labels (docs/method.md §6.2).
        Fitted: ``weights_`` (B,), ``holdout_nll_``.""",
        module=__name__,
        max_iter=100,
    ),
    groups=("core", "weighted"),
)
