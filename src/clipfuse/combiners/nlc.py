"""NLC, the Neural Logit Controller (docs/method.md §3): per-input temperatures for every backbone."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners.gating import ControllerCombiner, controller_input
from clipfuse.combiners.registry import register_combiner
from clipfuse.errors import FitError

POSITIVITY = ("softplus", "exp")


@register_combiner(groups=("core", "controllers"))
class NLC(ControllerCombiner):
    """``fused(x) = sum_b z_b(x) / t_b(x)`` with ``t(x) = pos(MLP([h_1(x); ...; h_B(x)]))``.

    MLP: Linear(D, hidden=128) -> ReLU -> Linear(128, B); ``pos`` is ``softplus(.) + eps``
    (default) or ``exp``. The output bias starts so that every ``t = 1`` (and the last weights at
    zero), so training starts from the plain logit sum. Cross-entropy on the fused logits, Adam
    lr 2e-4, weight decay 0.01. Budget: a fixed 1,000 Adam steps on minibatches of 256 (the whole
    hold-out when smaller), no early stopping -- it needs no validation set, which a 1-shot
    hold-out lacks, and cannot leak test labels (the reasoning and the timing behind 1,000 are in
    ``clipfuse.combiners.gating``). Seeded: same seed + same inputs -> identical weights on CPU.
    ``eps`` (default 0.01) caps each backbone's weight ``1/t`` at 100, keeping fused logits finite
    in float32. ``normalize_inputs=True`` L2-normalises each backbone's feature block before
    concatenation. Fitted: ``mlp_``, ``train_loss_``; ``predict_temperatures`` gives t(x).
    """

    name = "nlc"
    has_temperatures = True
    param_choices = {"positivity": POSITIVITY}

    def __init__(self, *, positivity: str = "softplus", eps: float = 0.01, **params: Any) -> None:
        super().__init__(**params)
        self.positivity = positivity
        self.eps = eps

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.positivity == "softplus" and not 0 < self.eps < 1:
            raise FitError(f"nlc: eps must be in (0, 1) so that t = 1 is reachable; got {self.eps}")

    def _neutral_bias(self) -> float:
        if self.positivity == "exp":
            return 0.0
        return math.log(math.expm1(1.0 - self.eps))  # softplus(b) + eps == 1

    def _temperatures(self, raw: torch.Tensor) -> torch.Tensor:
        if self.positivity == "exp":
            return raw.exp()
        return F.softplus(raw) + self.eps

    def _mix_weights(self, raw: torch.Tensor) -> torch.Tensor:
        return 1.0 / self._temperatures(raw)

    def predict_temperatures(self, features: list) -> torch.Tensor:
        """(N, B) temperatures t_b(x); larger = that backbone counts less for this input."""
        feats = self._checked_features(features)
        with torch.no_grad():
            return self._temperatures(self.mlp_(controller_input(feats, self.normalize_inputs)))
