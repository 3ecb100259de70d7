"""Building one combiner from a name (the registry lookup, the seed, the backbones' costs).

Shared below ``heads/`` (a head bank fused by an inner combiner), ``cascade/`` (prefix
controllers) and the protocol (``clipfuse.protocol``), so each builds its combiners the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


class ControllerOwner:
    """Mixin for combiners that fit registered controllers given by their ``controller`` (a
    registry name or an unfitted combiner object) and ``controller_params`` parameters (cascades,
    subsets): building one, its defaults under ``controller__*`` in ``get_params(deep=True)``,
    and the backbones fit chose to run."""

    nested_params = {"controller": "controller_params"}

    def __init__(
        self,
        *,
        controller: str | Combiner = "nlc",
        controller_params: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(device=device)  # type: ignore[call-arg]
        self.controller, self.controller_params, self.seed = controller, controller_params, seed
        self._adopt_controller()  # a combiner object -> name + params

    def set_params(self, **params: Any) -> Combiner:
        super().set_params(**params)  # type: ignore[misc]
        self._adopt_controller()
        return self  # type: ignore[return-value]

    def _adopt_controller(self) -> None:
        """A controller given as an (unfitted) combiner object becomes its registry name plus
        its parameters (``controller_params`` on top), so the owner's parameters stay JSON."""
        if isinstance(self.controller, Combiner):
            params = self.controller.get_params(deep=False)
            params.pop("device", None)
            self.controller_params = {**params, **(self.controller_params or {})}
            self.controller = self.controller.name

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
