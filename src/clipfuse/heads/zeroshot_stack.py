"""Combiners over zero-shot-initialised probes (``clipfuse.heads.zeroshot_probe``).

- ``zs_probe``: every backbone's probe, fused by the shrunk mix (``shrunk_mix``) of the probed
  logits. The mix is fitted on cross-fitted probe logits (``HeadStack``'s ``crossfit``
  protocol), in-sample ones at 1 shot. Chosen over the plain mean of probed logits on the demo
  images: the mean lets the weak backbones pull Fashion-MNIST down by ~1 point
  (BENCHMARKS.md "Zero-shot-initialised probes").
- ``zs_probe_nlc``: the same probes with NLC as the controller on top (as ``lp_nlc`` is built).

Both learn only from the labelled hold-out: the probes' residual weights (and their weight
decay, by cross-validation when every class has >= 2 rows) and the controller.
"""

from __future__ import annotations

from typing import Any

from clipfuse.combiners.registry import register_combiner
from clipfuse.heads.stack import HeadStack


class _ZeroShotProbeStack(HeadStack):
    """Zero-shot-initialised probes under a registered controller; ``fit_notes`` records each
    backbone's weight decay, how it was chosen, and which rows the controller saw."""

    head_kind = "zsprobe"

    def fit_notes(self) -> dict[str, Any]:
        self._check_fitted()
        meta = self.heads_.meta_
        return {
            "probe_weight_decays": [float(m["weight_decay"]) for m in meta],
            "probe_selection": sorted({str(m["selection"]) for m in meta}),
            "controller_rows": self.controller_rows_,
        }


@register_combiner(groups=("heads",), tier="experimental")
class ZeroShotProbeMix(_ZeroShotProbeStack):
    """Zero-shot-initialised probe per backbone, fused by the shrunk mix (see the module doc)."""

    name = "zs_probe"
    inner_name = "shrunk_mix"


@register_combiner(groups=("heads",), tier="experimental")
class ZeroShotProbeNLC(_ZeroShotProbeStack):
    """Zero-shot-initialised probe per backbone, NLC controller on top (see the module doc)."""

    name = "zs_probe_nlc"
    inner_name = "nlc"
