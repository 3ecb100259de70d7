"""Building one combiner from a name (the registry lookup, the seed, the backbones' costs) and
the rows it fits on (a hold-out, plus the rest of train unlabelled where it can use them).

Shared below ``heads/`` (a head bank fused by an inner combiner), ``cascade/`` (prefix
controllers) and the evaluation runner, so each builds its combiners the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import make_combiner


def build_combiner(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    seed: int | None = None,
    gflops: Sequence[float | None] | None = None,
    device: str = "cpu",
) -> Combiner:
    """An unfitted registered combiner with ``params``; ``seed`` fills a ``seed`` parameter the
    params do not set, ``gflops`` fills a cost-aware combiner's unset ``gflops``."""
    params = dict(params or {})
    combiner = make_combiner(name, device=device, **params)
    own = combiner.get_params(deep=False)
    if seed is not None and "seed" in own and "seed" not in params:
        combiner.set_params(seed=int(seed))
    if gflops and "gflops" in own and own["gflops"] is None and None not in gflops:
        combiner.set_params(gflops=[float(g) for g in gflops])  # type: ignore[union-attr]
    return combiner


def learns_from_labels(combiner: Combiner) -> bool:
    """Does ``fit`` learn anything (so its training rows must be honest)?"""
    return type(combiner)._fit is not Combiner._fit


def fit_inputs(
    combiner, train: Any, hold: Any
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(features, logits, y, info) to fit ``combiner`` on for one hold-out draw.

    Combiners with ``uses_unlabelled`` also get every other train image with ``y = -1``
    (its label is never passed); ``info["unlabelled"]`` records how many, so tables show it.
    """
    if not combiner.uses_unlabelled:
        return hold.features, hold.logits, hold.labels, {}
    hold_rows = np.searchsorted(train.indices, hold.draw.positions)
    rest = np.setdiff1d(np.arange(train.labels.numel()), hold_rows)
    if rest.size == 0:
        return hold.features, hold.logits, hold.labels, {"unlabelled": 0}
    other = train.select(rest)
    feats = [torch.cat([a, b]) for a, b in zip(hold.features, other.features)]
    logits = torch.cat([hold.logits, other.logits], dim=1)
    y = torch.cat([hold.labels, torch.full_like(other.labels, -1)])
    return feats, logits, y, {"unlabelled": int(rest.size)}


class ControllerOwner:
    """Mixin for combiners that fit registered controllers named by their ``controller`` and
    ``controller_params`` parameters (cascades, subsets): building one, its defaults under
    ``controller__*`` in ``get_params(deep=True)``, and the backbones fit chose to run."""

    nested_params = {"controller": "controller_params"}

    def _nested_defaults(self, prefix: str) -> dict[str, Any]:
        defaults = make_combiner(self.controller).get_params(deep=True)
        defaults.pop("device", None)
        return defaults

    def _new_controller(self) -> Combiner:
        return build_combiner(
            self.controller, self.controller_params, seed=int(self.seed), device=self.device
        )

    def required_backbones(self) -> list[int]:
        self._check_fitted()
        return list(self.required_backbones_)
