"""NLC-residual: an input-dependent correction on top of a fitted static fusion.

``fused(x) = sum_b w0_b * exp(r_b(x)) * n_b(z_b(x))``: ``w0`` is a static solution fitted first on
the same labelled hold-out -- ``start="shrunk_mix"`` (default; ``weights.fit_mix``) or
``start="calibration"`` (``w0_b = 1 / (B * T_b)``, the calibrated mean's per-backbone temperatures).
``r = MLP([h_1; ...; h_B])`` has its last layer zero-initialised, so the fit starts exactly at the
static solution, and the loss ``CE + residual_penalty * mean(r^2)`` pulls it back toward that start
(not toward zero weights or the plain sum, as NLC's weight decay does). ``logit_norm="std"`` divides
each backbone's logits by their per-example std across classes before fusing (stateless, the same at
fit and predict; "none" = raw logits). Training machinery (minibatches, seed, fixed step budget,
``backbone_dropout``) is ``ControllerCombiner``'s.
Fitted: ``w0_`` (B,), ``mlp_``, ``train_loss_``.
"""

from __future__ import annotations

from typing import Any

import torch

from clipfuse.combiners.gating import ControllerCombiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.combiners.weights import calibrate, fit_mix

STARTS = ("shrunk_mix", "calibration")
LOGIT_NORMS = ("none", "std")


@register_combiner(groups=("controllers",), tier="experimental")
class NLCResidual(ControllerCombiner):
    """NLC whose per-backbone weights are a learned residual ``exp(r(x))`` on a static start ``w0``.

    Learns ``w0`` (L-BFGS, deterministic) then the residual MLP (Adam, fixed steps) from the
    labelled hold-out only. See the module docstring for the start options and ``logit_norm``.
    """

    name = "nlc_residual"
    param_choices = {"start": STARTS, "logit_norm": LOGIT_NORMS}

    def __init__(
        self,
        *,
        start: str = "shrunk_mix",
        logit_norm: str = "none",
        residual_penalty: float = 1.0,
        shrinkage: float = 1.0,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.start = start
        self.logit_norm = logit_norm
        self.residual_penalty = residual_penalty
        self.shrinkage = shrinkage

    def _norm_logits(self, z: torch.Tensor) -> torch.Tensor:
        if self.logit_norm == "std":
            return z / z.std(dim=-1, keepdim=True).clamp_min(1e-6)
        return z

    def _start(self, z: torch.Tensor, y: torch.Tensor) -> None:
        zn = self._norm_logits(z)
        if self.start == "shrunk_mix":
            self.w0_, _ = fit_mix(zn, y, float(self.shrinkage), 100)
        else:
            self.w0_ = 1.0 / (zn.shape[0] * calibrate(zn, y, 100)[0])
        self.w0_ = self.w0_.detach().to(z.device, torch.float32)

    def _neutral_bias(self) -> float:
        return 0.0  # r = 0 -> w = w0

    def _mix_weights(self, raw: torch.Tensor) -> torch.Tensor:
        return self.w0_ * raw.clamp(-10.0, 10.0).exp()

    def _penalty(self, raw: torch.Tensor) -> torch.Tensor:
        return float(self.residual_penalty) * raw.pow(2).mean()

    def fit_notes(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "logit_norm": self.logit_norm,
            "backbone_dropout": float(self.backbone_dropout),
            "w0": [round(float(v), 4) for v in self.w0_],
        }

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta, tensors = super()._get_fitted()
        return meta, {**tensors, "w0": self.w0_}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.w0_ = tensors["w0"]
        super()._set_fitted(meta, {k: v for k, v in tensors.items() if k != "w0"})
