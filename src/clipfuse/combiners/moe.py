"""Mixture-of-experts gate: a softmax over backbones computed from the concatenated features."""

from __future__ import annotations

import torch

from clipfuse.combiners.gating import ControllerCombiner
from clipfuse.combiners.registry import register_combiner


@register_combiner(groups=("core", "controllers"))
class MixtureOfExperts(ControllerCombiner):
    """``fused(x) = sum_b g_b(x) z_b(x)`` with ``g(x) = softmax(MLP([h_1(x); ...; h_B(x)]))``.

    Same network, optimiser and fixed budget as NLC (so the comparison isolates the weighting
    rule): the gate starts uniform (zero last layer), i.e. from mean logits. Unlike NLC's
    temperatures the gates sum to 1, so the gate can redistribute trust between backbones but
    not sharpen or soften the fused logits overall.
    """

    name = "moe"

    def _neutral_bias(self) -> float:
        return 0.0

    def _mix_weights(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.softmax(raw, dim=-1)

    def predict_gates(self, features: list) -> torch.Tensor:
        """(N, B) gate values, rows sum to 1."""
        feats = self._checked_features(features)
        with torch.no_grad():
            return self._weights(feats)
