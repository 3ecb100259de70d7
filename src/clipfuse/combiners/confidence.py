"""Label-free weighting of backbones by their confidence ("Customized Ensembles", ICML 2024).

Why (issue 11): a 1-shot hold-out has 10 labels on a 10-class task, so choosing or weighting
backbones by hold-out accuracy is noisy (the hold-out's best single backbone is 4.6 points below
the true best on the demo's Fashion-MNIST). A backbone's mean top-softmax probability over *images*
needs no label at all, and users have many unlabelled images of their domain. On the shipped demo
images it ranks the backbone that is truly best first on both datasets (BENCHMARKS.md "Fusion").

Two uses, both inductive (fixed weights or per-image weights, one new image at a time works):
- ``conf_weighted``: per image, each backbone's logits weighted by its own top probability
  (``w_b(x) ~ p_max,b(x)^power``), the zero-shot ensemble of the paper; nothing is learned.
- ``conf_mix``: dataset-level weights ``softmax(mean_conf / tau)`` estimated on every image given
  to ``fit`` (labelled and ``y == -1`` rows alike), used as the *prior* of the shrunk mix: the hold-out
  labels move the mixing logits away from it under an L2 pull (``shrinkage``), so labels correct a
  misleading confidence ranking as they accumulate (1 shot: close to the prior; many shots: close to
  the Super Learner).
Known limit: a backbone that is confidently wrong (over-sharp logit scale) gets too much prior
weight; the labels and the safety rule of ``safe_conf_mix`` are the guard against that.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.combiners.shrunk_mix import ShrunkMix, fit_mix
from clipfuse.errors import FitError

FEW_IMAGES = 100  # below this many images a recorded note says the prior is rough


def mean_confidence(z: torch.Tensor) -> torch.Tensor:
    """(B,) each backbone's mean top softmax probability over the N images of ``z`` (B, N, C)."""
    return torch.softmax(z, dim=-1).amax(dim=-1).mean(dim=1)


@register_combiner(groups=("fusion",))
class ConfidenceWeighted(Combiner):
    """``sum_b w_b(x) z_b(x)`` with ``w_b(x) = p_max,b(x)^power / sum_b' p_max,b'(x)^power``.

    Label-free and per image; nothing is fitted (``power`` 1 = the paper's confidence weighting;
    larger ``power`` moves toward ``max_confidence``, which keeps only the most confident backbone).
    """

    name = "conf_weighted"

    def __init__(self, *, power: float = 1.0, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.power = power

    def _validate_params(self) -> None:
        if not self.power > 0:
            raise FitError(f"conf_weighted: power must be > 0; got {self.power}")

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        log_conf = z.amax(dim=-1) - torch.logsumexp(z, dim=-1)  # (B, N) log top probability
        w = torch.softmax(self.power * log_conf, dim=0)  # p_max^power, normalised over backbones
        return (w.unsqueeze(-1) * z).sum(dim=0)


@register_combiner(groups=("fusion",))
class ConfidenceMix(ShrunkMix):
    """Shrunk mix whose prior is the label-free confidence weighting instead of the uniform mean.

    Reads every image given to ``fit`` for the prior (rows with ``y == -1`` are used for nothing
    else) and the labelled rows for the mix. ``tau`` is in probability units: a backbone ``tau``
    less confident on average gets 1/e of the prior weight (default 0.03; ``shrinkage`` default
    3.0; both chosen on the demo images only, BENCHMARKS.md "Fusion").
    Fitted: ``weights_`` (B,), ``prior_`` (B,) prior proportions, ``mean_confidence_`` (B,),
    ``num_prior_images_``, ``num_unlabelled_``, ``holdout_loss_``, ``note_`` (None, or why the
    prior is rough: no unlabelled rows, or under 100 images).
    """

    name = "conf_mix"
    uses_unlabelled: ClassVar[bool] = True

    def __init__(
        self,
        *,
        shrinkage: float = 3.0,
        tau: float = 0.03,
        max_prior_ratio: float = 20.0,
        max_iter: int = 100,
        device: str = "cpu",
    ) -> None:
        super().__init__(shrinkage=shrinkage, max_iter=max_iter, device=device)
        self.tau = tau
        self.max_prior_ratio = max_prior_ratio

    def _validate_params(self) -> None:
        super()._validate_params()
        if not self.tau > 0:
            raise FitError(f"{self.name}: tau must be > 0; got {self.tau}")
        if not self.max_prior_ratio >= 1:
            raise FitError(f"{self.name}: max_prior_ratio must be >= 1; got {self.max_prior_ratio}")

    def _fit_prior(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Prior from all rows (labels unused); records how many images it rests on."""
        self.mean_confidence_ = mean_confidence(z)
        self.num_prior_images_ = int(z.shape[1])
        self.num_unlabelled_ = int((y < 0).sum())
        self.note_ = None
        if self.num_unlabelled_ == 0 or self.num_prior_images_ < FEW_IMAGES:
            self.note_ = (
                f"confidence prior estimated from {self.num_prior_images_} images, "
                f"{self.num_unlabelled_} of them unlabelled (give unlabelled images of the "
                "domain, y = -1, for a steadier prior)"
            )
        logit = self.mean_confidence_ / self.tau
        floor = logit.max() - math.log(self.max_prior_ratio)  # labels can still move every weight
        self.prior_ = torch.softmax(logit.clamp_min(floor), dim=0)

    def _fit_fusion(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        return fit_mix(z, y, self.shrinkage, self.max_iter, prior=self.prior_.log())

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        self._fit_prior(z, y)
        labelled = y >= 0
        super()._fit(features, z[:, labelled], y[labelled])

    def fit_notes(self) -> dict[str, Any]:
        self._check_fitted()
        notes = super().fit_notes()
        notes["prior"] = [round(float(p), 4) for p in self.prior_]
        if self.note_ is not None:
            notes["note"] = self.note_
        return notes

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta, tensors = super()._get_fitted()
        meta.update(
            num_prior_images=self.num_prior_images_,
            num_unlabelled=self.num_unlabelled_,
            note=self.note_,
        )
        tensors.update(prior=self.prior_, mean_confidence=self.mean_confidence_)
        return meta, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super()._set_fitted(meta, tensors)
        self.num_prior_images_ = int(meta["num_prior_images"])
        self.num_unlabelled_ = int(meta["num_unlabelled"])
        self.note_ = meta["note"]
        self.prior_ = tensors["prior"]
        self.mean_confidence_ = tensors["mean_confidence"]
