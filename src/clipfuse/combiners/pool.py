"""The weighted pool: one estimator for every combiner that predicts ``sum_b w_b z_b``.

``best_single``, ``calibrated_mean``, ``super_learner``, ``shrunk_mix``, ``conf_mix``,
``semi_mix``, ``safe_mix``, ``safe_conf_mix`` and ``caruana`` differ only in how the weights are
fitted (``clipfuse.combiners.weights``), so each is a *preset* of this class: a registry name, a
weight rule and the parameters (with defaults) that rule reads, as timm registers presets of one
model class. The constructor keeps each name's parameters, so saved ensembles and CLI names work.

``required_backbones()`` follows the fitted weights: a backbone with weight 0 (``best_single``, or
a safety rule that chose one backbone) is never loaded or encoded by ``predict`` and ``serve``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.weights import PoolFit, Rule
from clipfuse.errors import FitError


class WeightedPool(Combiner):
    """``sum_b w_b z_b`` with ``w`` (B,) fitted on the hold-out by the preset's ``rule``.

    Fitted: ``weights_`` (B,), ``mix_`` (proportions), and what the rule records as
    ``<key>_`` attributes (e.g. ``chosen_`` of ``best_single``, ``temperatures_`` of
    ``calibrated_mean``, ``prior_`` / ``choice_`` of ``safe_conf_mix``).
    """

    rule: ClassVar[Rule]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        super().__init__(device=params.pop("device", "cpu"))
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise FitError(f"{self.name} has no parameter(s) {unknown}; known: {self._param_names()}")
        for key, value in {**self.defaults, **params}.items():
            setattr(self, key, value)

    @classmethod
    def _param_names(cls) -> list[str]:
        return [*cls.defaults, "device"]

    def _validate_params(self) -> None:
        super()._validate_params()
        if "required_wins" in self.defaults and not 1 <= self.required_wins <= self.folds:
            raise FitError(
                f"{self.name}: required_wins must be in [1, folds={self.folds}]; "
                f"got {self.required_wins}"
            )

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        self._adopt(type(self).rule(self, z, y))

    def _adopt(self, fit: PoolFit) -> None:
        """Keep a rule's result; its meta and tensors also become ``<key>_`` attributes."""
        self.weights_ = fit.weights
        self.fit_meta_, self.fit_tensors_, self.notes_ = fit.meta, fit.tensors, fit.notes
        for key, value in {**fit.meta, **fit.tensors}.items():
            setattr(self, f"{key}_", value)

    @property
    def mix_(self) -> torch.Tensor:
        return self.weights_ / self.weights_.sum()

    def required_backbones(self) -> list[int]:
        """The backbones with a non-zero weight: the only ones prediction reads."""
        self._check_fitted()
        return torch.nonzero(self.weights_).flatten().tolist()

    def chosen_backbone(self) -> int | None:
        self._check_fitted()
        chosen = self.fit_meta_.get("chosen")
        return None if chosen is None else int(chosen)

    def fit_notes(self) -> dict[str, Any]:
        self._check_fitted()
        return dict(self.notes_)

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        used = torch.tensor(self.required_backbones(), device=z.device)
        return torch.einsum("b,bnc->nc", self.weights_[used], z[used])

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {**self.fit_meta_, "notes": self.notes_}, {"weights": self.weights_,
                                                           **self.fit_tensors_}  # fmt: skip

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        meta, tensors = dict(meta), dict(tensors)
        notes = meta.pop("notes", {})  # files saved before issue 22 have no notes
        weights = tensors.pop("weights", None)
        if weights is None:
            weights = _legacy_weights(meta, tensors, self.num_backbones_)
        self._adopt(PoolFit(weights.float(), meta, tensors, notes))


def _legacy_weights(meta: dict[str, Any], tensors: dict[str, torch.Tensor], b: int) -> torch.Tensor:
    """Weights of a file saved by the classes this pool replaced (no ``weights`` tensor)."""
    if "temperatures" in tensors:  # calibrated_mean
        return 1.0 / (b * tensors["temperatures"])
    if "counts" in tensors:  # caruana
        return tensors["counts"] / tensors["counts"].sum()
    weights = torch.zeros(b, device=next(iter(tensors.values())).device)  # best_single
    weights[int(meta["chosen"])] = 1.0
    return weights


def preset(
    name: str,
    rule: Rule,
    doc: str,
    *,
    min_per_class: int = 1,
    uses_unlabelled: bool = False,
    module: str,
    **defaults: Any,
) -> type[WeightedPool]:
    """A WeightedPool class named ``name`` fitting ``rule`` with ``defaults``; ``module`` is
    where it is registered (the registry lists names in module order)."""
    attrs = {
        "name": name, "rule": staticmethod(rule), "defaults": defaults, "__doc__": doc,
        "min_per_class": min_per_class, "uses_unlabelled": uses_unlabelled, "__module__": module,
    }  # fmt: skip
    return type("".join(part.title() for part in name.split("_")), (WeightedPool,), attrs)
