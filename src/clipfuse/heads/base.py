"""Per-backbone heads: classifiers on frozen features that replace the zero-shot logits.

A head bank maps the fusion inputs (B feature matrices + zero-shot logits ``(B, N, C)``) to
head logits of the same shape, one independent head per backbone. The combiners in
``clipfuse.heads.stack`` put a controller (NLC, Super Learner, mean, ...) on top.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from clipfuse.combiners.base import PARAM_RULES
from clipfuse.combiners.folds import cross_val_predict
from clipfuse.errors import FitError


def rows_of(features: list[torch.Tensor], rows: torch.Tensor) -> list[torch.Tensor]:
    """Every backbone's features restricted to ``rows`` (an index or a bool mask)."""
    return [f[rows] for f in features]


class HeadBank:
    """One head per backbone; subclasses implement ``_fit_one`` / ``_logits_one`` and state.

    ``params`` are validated against ``DEFAULTS`` (unknown keys fail loudly) and must be JSON
    values, because a stacking combiner stores them in its config.
    """

    kind: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: dict[str, Any] | None = None, *, device: str = "cpu") -> None:
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.DEFAULTS))
        if unknown:
            raise FitError(
                f"{self.kind} heads have no parameter(s) {unknown}; known: {sorted(self.DEFAULTS)}"
            )
        self.params = {**self.DEFAULTS, **params}
        self.device = device
        self._validate()
        self.fitted_: list[dict[str, torch.Tensor]] = []  # per backbone: tensors
        self.meta_: list[dict[str, Any]] = []  # per backbone: JSON metadata (chosen hyper-params)

    def _validate(self) -> None:
        """FitError for unusable parameter values: the combiners' shared ``PARAM_RULES`` here,
        subclasses add their own checks."""
        for key, value in self.params.items():
            ok, must = PARAM_RULES.get(key, (None, ""))
            if ok is not None and not ok(value):
                raise FitError(f"{self.kind} heads: {key} must be {must}; got {value}")

    def clone(self) -> HeadBank:
        """Same parameters, not fitted."""
        return type(self)(self.params, device=self.device)

    # ---- fit / predict -------------------------------------------------------------------
    def fit(
        self,
        features: list[torch.Tensor],
        logits: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        seed: int,
    ) -> HeadBank:
        """Fit every backbone's head on all given rows."""
        self.fitted_, self.meta_ = [], []
        for b, feats in enumerate(features):
            tensors, meta = self._fit_one(feats, logits[b], y, num_classes, seed + 7919 * b)
            self.fitted_.append(tensors)
            self.meta_.append(meta)
        return self

    def logits(self, features: list[torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """(B, N, C) head logits."""
        if not self.fitted_:
            raise FitError(f"{self.kind} heads are not fitted")
        return torch.stack([self._logits_one(b, f, logits[b]) for b, f in enumerate(features)])

    def fit_crossfit(
        self,
        features: list[torch.Tensor],
        logits: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        num_folds: int,
        seed: int,
    ) -> torch.Tensor:
        """Fit on all rows; return out-of-fold head logits ``(B, N, C)`` for every row.

        Row i's logits come from heads fitted without the fold holding row i, so a controller
        trained on them sees what a head does on inputs it has not memorised. Default: K-fold
        refits; subclasses with a cheaper exact form (leave-one-out) override this.
        """
        def fit_predict(k: int, train: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
            part = self.clone().fit(
                rows_of(features, train), logits[:, train], y[train], num_classes, seed + k
            )
            return part.logits(rows_of(features, held), logits[:, held]).float()

        oof, _ = cross_val_predict(fit_predict, y, num_folds, seed, dim=1)
        self.fit(features, logits, y, num_classes, seed)
        return oof

    # ---- subclass hooks ------------------------------------------------------------------
    def _fit_one(
        self, features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, c: int, seed: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        raise NotImplementedError

    def _logits_one(self, b: int, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- saved state ---------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON metadata, tensors named ``<backbone>.<name>``)."""
        tensors = {f"{b}.{k}": v for b, t in enumerate(self.fitted_) for k, v in t.items()}
        return {"kind": self.kind, "params": self.params, "backbones": self.meta_}, tensors

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> HeadBank:
        """Inverse of ``state`` (``meta['params']`` were given to the constructor)."""
        self.meta_ = list(meta["backbones"])
        self.fitted_ = [{} for _ in self.meta_]
        for key, value in tensors.items():
            b, name = key.split(".", 1)
            self.fitted_[int(b)][name] = value.to(self.device)
        return self
