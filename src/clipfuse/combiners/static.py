"""Static ensembles: no input-conditioned weights (docs/method.md §4, the baselines NLC must beat).

All of them read only the logits, so ``features`` may be ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner


@register_combiner(groups=("core",))
class BestSingle(Combiner):
    """The one backbone with the highest accuracy on the hold-out given to ``fit``.

    Chosen on the hold-out, never on test (docs/method.md §5); ties go to the lower NLL, which keeps
    the choice meaningful on tiny 1-shot hold-outs where accuracies often tie.
    Fitted: ``chosen_`` (backbone index), ``holdout_accuracy_`` and ``holdout_nll_`` (B,).
    """

    name = "best_single"

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        correct = (z.argmax(-1) == y).float()  # (B, N)
        self.holdout_accuracy_ = correct.mean(dim=1)
        log_p = torch.log_softmax(z, dim=-1)
        target = y.view(1, -1, 1).expand(z.shape[0], -1, 1)
        self.holdout_nll_ = -log_p.gather(-1, target).squeeze(-1).mean(dim=1)
        best = self.holdout_accuracy_ == self.holdout_accuracy_.max()
        nll = torch.where(best, self.holdout_nll_, torch.full_like(self.holdout_nll_, math.inf))
        self.chosen_ = int(nll.argmin())

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return z[self.chosen_]

    def chosen_backbone(self) -> int | None:
        self._check_fitted()
        return self.chosen_

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"chosen": self.chosen_}, {
            "holdout_accuracy": self.holdout_accuracy_,
            "holdout_nll": self.holdout_nll_,
        }

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.chosen_ = int(meta["chosen"])
        self.holdout_accuracy_ = tensors["holdout_accuracy"]
        self.holdout_nll_ = tensors["holdout_nll"]


@register_combiner(groups=("core",))
class MeanLogits(Combiner):
    """Average of the backbones' logits."""

    name = "mean_logits"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        return z.mean(dim=0)


@register_combiner(groups=("core",))
class MeanProba(Combiner):
    """Average of the backbones' softmax probabilities; returns log(mean p) as its logits."""

    name = "mean_proba"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        # log-sum-exp over backbones of log-probabilities: stable even for peaked softmaxes.
        return torch.logsumexp(torch.log_softmax(z, dim=-1), dim=0) - math.log(z.shape[0])


@register_combiner(groups=("core",))
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


@register_combiner(groups=("core",))
class MaxConfidence(Combiner):
    """Per input, the logits of the backbone whose top softmax probability is highest."""

    name = "max_confidence"

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        log_conf = z.amax(dim=-1) - torch.logsumexp(z, dim=-1)  # (B, N) log max-probability
        pick = log_conf.argmax(dim=0)  # (N,)
        return z[pick, torch.arange(z.shape[1], device=z.device)]
