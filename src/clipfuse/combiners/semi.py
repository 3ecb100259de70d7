"""Semi-supervised shrunk mix: the hold-out's labels plus pseudo-labels of unlabelled images.

Unlabelled rows come inside the estimator contract the scikit-learn way (SelfTrainingClassifier):
``fit(features, logits, y)`` with ``y == -1`` marking them; only combiners that declare
``uses_unlabelled = True`` accept that. Self-training: the current mix labels the unlabelled pool,
the most confident ``keep`` share of it joins the hold-out (total weight equal to the hold-out's,
so labels are never outvoted), the mix is refitted; ``rounds`` times. Without any unlabelled row it
falls back to the plain shrunk mix and records ``fallback`` (never silently).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from clipfuse.combiners.registry import register_combiner
from clipfuse.combiners.shrunk_mix import ShrunkMix, fit_mix
from clipfuse.errors import FitError


@register_combiner(groups=("fusion",))
class SemiShrunkMix(ShrunkMix):
    """Shrunk mix refitted on hold-out labels + confident pseudo-labels (``y == -1`` rows).

    Fitted: ``weights_``, ``holdout_loss_``, ``num_unlabelled_`` (rows given with y = -1),
    ``num_pseudo_`` (pseudo-labelled rows used in the last round), ``fallback_`` (None or why).
    """

    name = "semi_mix"
    uses_unlabelled: ClassVar[bool] = True

    def __init__(
        self,
        *,
        shrinkage: float = 1.0,
        keep: float = 0.5,
        rounds: int = 2,
        max_iter: int = 100,
        device: str = "cpu",
    ) -> None:
        super().__init__(shrinkage=shrinkage, max_iter=max_iter, device=device)
        self.keep = keep
        self.rounds = rounds

    def _validate_params(self) -> None:
        super()._validate_params()
        if not 0 < self.keep <= 1:
            raise FitError(f"{self.name}: keep must be in (0, 1]; got {self.keep}")
        if self.rounds < 1:
            raise FitError(f"{self.name}: rounds must be >= 1; got {self.rounds}")

    def fit_notes(self) -> dict[str, Any]:
        self._check_fitted()
        return {} if self.fallback_ is None else {"fallback": self.fallback_}

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        labelled = y >= 0
        zl, yl, zu = z[:, labelled], y[labelled], z[:, ~labelled]
        self.num_unlabelled_ = int(zu.shape[1])
        self.num_pseudo_ = 0
        self.fallback_ = None
        if self.num_unlabelled_ == 0:
            self.fallback_ = "no unlabelled rows (y == -1): fitted the shrunk mix on labels only"
            self.weights_, self.holdout_loss_ = fit_mix(zl, yl, self.shrinkage, self.max_iter)
            return
        weights = torch.full((z.shape[0],), 1.0 / z.shape[0], device=z.device)  # mean of logits
        for _ in range(self.rounds):
            with torch.no_grad():
                conf, pseudo = torch.softmax(torch.einsum("b,bnc->nc", weights, zu), -1).max(-1)
                chosen = conf >= torch.quantile(conf, 1.0 - self.keep)
            m = int(chosen.sum())
            zz = torch.cat([zl, zu[:, chosen]], 1)
            yy = torch.cat([yl, pseudo[chosen]])
            sw = torch.cat(
                [
                    torch.ones(len(yl), device=z.device),
                    torch.full((m,), len(yl) / m, device=z.device),
                ]
            )
            weights, self.holdout_loss_ = fit_mix(zz, yy, self.shrinkage, self.max_iter, sw)
            self.num_pseudo_ = m
        self.weights_ = weights

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta, tensors = super()._get_fitted()
        meta.update(
            num_unlabelled=self.num_unlabelled_,
            num_pseudo=self.num_pseudo_,
            fallback=self.fallback_,
        )
        return meta, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super()._set_fitted(meta, tensors)
        self.num_unlabelled_ = int(meta["num_unlabelled"])
        self.num_pseudo_ = int(meta["num_pseudo"])
        self.fallback_ = meta["fallback"]
