"""Hold-out-weighted mixes of the backbones (issue 11), presets of the weighted pool.

Why: with 1-16 labels per class, NLC and the Super Learner lower the hold-out cross-entropy mostly
by sharpening every backbone at once, and their few-label choices are noisy. These mixes learn
only the *mixing proportions* (the overall scale is free and never changes the argmax) under an L2
pull toward a prior, use the label-free confidence of unlabelled images, or fall back to the best
single backbone where cross-validation on the hold-out says fusion does not help. Defaults were
chosen on the demo images only (BENCHMARKS.md "Fusion"). ``conf_weighted`` is the one per-image
(not pooled) rule here: nothing is fitted.
Known limit of the confidence prior: a backbone that is confidently wrong (over-sharp logit scale)
gets too much prior weight; the labels and the safety rule of ``safe_conf_mix`` guard against it.
"""

from __future__ import annotations

import torch

from clipfuse.combiners import weights
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.pool import preset
from clipfuse.combiners.registry import register_combiner

_CONF = weights.with_confidence_prior
_SAFE = weights.with_safety

ShrunkMix = register_combiner(
    preset(
        "shrunk_mix",
        weights.shrunk,
        """``w = scale * softmax(a)``, ``a`` pulled toward 0 (the mean of logits) by
        ``shrinkage * ||a - mean a||^2`` against the summed hold-out cross-entropy, so the pull
        weakens as labels grow. Fitted: ``weights_``, ``mix_``, ``holdout_loss_``.""",
        module=__name__, shrinkage=1.0, max_iter=100,
    ),  # fmt: skip
    groups=("weighted",),
)
SemiShrunkMix = register_combiner(
    preset(
        "semi_mix",
        weights.self_trained,
        """Shrunk mix refitted on hold-out labels + confident pseudo-labels of ``y == -1`` rows
        (self-training, as scikit-learn's SelfTrainingClassifier). Fitted: ``weights_``,
        ``holdout_loss_``, ``num_unlabelled_``, ``num_pseudo_``, ``fallback_``.""",
        uses_unlabelled=True, module=__name__, shrinkage=1.0, keep=0.5, rounds=2, max_iter=100,
    ),  # fmt: skip
    groups=("weighted",),
    tier="experimental",
)


@register_combiner(groups=("label-free",))
class ConfidenceWeighted(Combiner):
    """``sum_b w_b(x) z_b(x)`` with ``w_b(x) = p_max,b(x)^power / sum_b' p_max,b'(x)^power``.

    Label-free and per image; nothing is fitted (``power`` 1 = the paper's confidence weighting;
    larger ``power`` moves toward ``max_confidence``, which keeps only the most confident backbone).
    """

    name = "conf_weighted"

    def __init__(self, *, power: float = 1.0, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.power = power

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        log_conf = z.amax(dim=-1) - torch.logsumexp(z, dim=-1)  # (B, N) log top probability
        w = torch.softmax(self.power * log_conf, dim=0)  # p_max^power, normalised over backbones
        return (w.unsqueeze(-1) * z).sum(dim=0)


ConfidenceMix = register_combiner(
    preset(
        "conf_mix",
        _CONF(weights.shrunk),
        """Shrunk mix pulled toward the label-free prior ``softmax(mean top probability / tau)``
        over every image given to ``fit`` (``y == -1`` rows only feed the prior). Fitted:
        ``weights_``, ``prior_``, ``mean_confidence_``, ``num_prior_images_``,
        ``num_unlabelled_``, ``holdout_loss_``, ``note_`` (None, or why the prior is rough).""",
        uses_unlabelled=True, module=__name__,
        shrinkage=3.0, tau=0.03, max_prior_ratio=20.0, max_iter=100,
    ),  # fmt: skip
    groups=("weighted",),
)
SafeMix = register_combiner(
    preset(
        "safe_mix",
        _SAFE(weights.shrunk),
        """Shrunk mix, or the best single backbone when its K-fold CV NLL on the hold-out is lower
        and it wins ``required_wins`` folds (default all 5: a looser rule picked a wrong backbone
        at 1 shot on the demo's CIFAR-10). Fitted: ``weights_``, ``choice_``, ``cv_nll_fusion_``,
        ``cv_nll_single_``, ``single_wins_``, ``fallback_``.""",
        module=__name__, shrinkage=1.0, folds=5, required_wins=5, seed=0, max_iter=100,
    ),  # fmt: skip
    groups=("weighted",),
)
SafeConfMix = register_combiner(
    preset(
        "safe_conf_mix",
        _CONF(_SAFE(weights.shrunk)),
        """The safety rule of ``safe_mix`` around ``conf_mix``: the prior is estimated once on
        every image (labels unused, no leak into the folds). The fusion candidate of ``auto``
        (the recommended method) and its choice wherever zero-shot is good.""",
        uses_unlabelled=True, module=__name__, shrinkage=3.0, tau=0.03, max_prior_ratio=20.0,
        folds=5, required_wins=5, seed=0, max_iter=100,
    ),  # fmt: skip
    groups=("weighted",),
)
RobustMix = register_combiner(
    preset(
        "robust_mix",
        _CONF(_SAFE(weights.shrunk)),
        """``safe_conf_mix`` whose two choices follow the labels by the one-standard-error rule
        on the paired out-of-fold NLL (issue 21): the confidence prior is kept unless the mix
        pulled toward uniform is better by more than ``se_rule`` standard errors (a backbone
        that is confidently wrong under an image shift cannot hold the prior's weight), and the
        best single backbone replaces the mix when it is better by as much. With 10 labels only
        a large gain switches; with 160 a small one does. Not ``auto``'s fallback: as that it
        held one 4-shot suite cell fewer than ``safe_conf_mix`` (BENCHMARKS.md "Task suite").""",
        uses_unlabelled=True, module=__name__, shrinkage=3.0, tau=0.03, max_prior_ratio=20.0,
        folds=5, required_wins=5, seed=0, max_iter=100, prior_cv=True, se_rule=1.0,
    ),  # fmt: skip
    groups=("weighted",),
)
CaruanaSelection = register_combiner(
    preset(
        "caruana",
        weights.caruana,
        """Greedy ensemble selection (Caruana et al., ICML 2004): counts of a forward selection
        with replacement on the hold-out NLL. Fitted: ``weights_``, ``counts_``, ``holdout_nll_``.""",
        module=__name__, rounds=20,
    ),  # fmt: skip
    groups=("weighted",),
)
