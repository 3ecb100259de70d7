"""Estimator base class shared by every combiner: parameters, input checks, saved state.

Follows the scikit-learn contract (ARCHITECTURE.md): ``__init__`` stores keyword parameters
only, ``fit`` learns and sets attributes ending in ``_``, and a fitted combiner can be written
as ``config()`` (JSON) + ``state_dict()`` (tensors for safetensors) and rebuilt with
``from_state`` -- no pickle anywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from clipfuse.combiners._optim import threads_for
from clipfuse.errors import FitError

ArrayLike = torch.Tensor | np.ndarray
FeaturesLike = Sequence[ArrayLike] | None

STATE_FORMAT_VERSION = 1


def to_tensor(x: ArrayLike, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """Tensor on ``device``; numpy (including read-only memmaps) is copied, never aliased."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    arr = np.asarray(x)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).to(device=device, dtype=dtype)


def check_logits(logits: ArrayLike) -> tuple[int, int, int]:
    """(B, N, C) of a logits array, or FitError explaining the expected layout."""
    shape = tuple(logits.shape)
    if len(shape) != 3:
        raise FitError(f"logits must have shape (backbones, samples, classes); got shape {shape}")
    b, n, c = shape
    if b < 1 or n < 1 or c < 2:
        raise FitError(
            f"logits need >= 1 backbone, >= 1 sample and >= 2 classes; got shape {shape}"
        )
    return b, n, c


def check_labels(y: ArrayLike, n: int, c: int, *, unlabelled: bool = False) -> None:
    """FitError unless ``y`` is ``n`` integer labels in ``[0, c)`` (``-1`` too if ``unlabelled``)."""
    shape = tuple(y.shape)
    if shape != (n,):
        raise FitError(f"labels must have shape ({n},) to match the logits; got shape {shape}")
    y_t = torch.as_tensor(np.asarray(y)) if not isinstance(y, torch.Tensor) else y
    if y_t.dtype.is_floating_point or y_t.dtype == torch.bool:
        raise FitError(f"labels must be integer class indices; got dtype {y_t.dtype}")
    lo, hi = int(y_t.min()), int(y_t.max())
    if lo == -1 and not unlabelled:
        raise FitError(
            "labels hold -1 (unlabelled rows); only combiners with uses_unlabelled accept them"
        )
    if unlabelled and not bool((y_t >= 0).any()):
        raise FitError("every label is -1: at least one labelled row per class is needed")
    if lo < (-1 if unlabelled else 0) or hi >= c:
        raise FitError(f"labels must lie in [0, {c}); got values from {lo} to {hi}")


class Combiner:
    """Fuses B backbones' logits ``(B, N, C)`` (and optionally their features) into ``(N, C)``.

    Subclasses set ``name`` (the registry key), declare their parameters as keyword-only
    ``__init__`` arguments, and implement ``_fit`` / ``_predict_logits``; learned ones also
    implement ``_get_fitted`` / ``_set_fitted`` so they can be saved without pickle.
    ``predict_proba`` is always ``softmax(predict_logits)``: combiners whose natural output is a
    probability return its log, so one evaluation path serves them all.
    """

    name: ClassVar[str] = ""
    uses_features: ClassVar[bool] = False  # True: features are required in fit and predict
    min_per_class: ClassVar[int] = 0  # examples per class that fit needs (1 for learned weights)
    uses_unlabelled: ClassVar[bool] = False  # True: fit accepts y == -1 rows (unlabelled images)

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device

    # ---- parameters (scikit-learn style) -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters as a JSON-serialisable dict."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Combiner:
        """Change constructor parameters; unknown names are a FitError (typos fail loudly)."""
        known = self._param_names()
        for key, value in params.items():
            if key not in known:
                raise FitError(f"{type(self).__name__} has no parameter {key!r}; known: {known}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:
        """Hook: raise FitError for parameter values that cannot work (checked in fit)."""

    # ---- input handling ------------------------------------------------------------------
    def _prepare(
        self, features: FeaturesLike, logits: ArrayLike, y: ArrayLike | None
    ) -> tuple[list[torch.Tensor] | None, torch.Tensor, torch.Tensor | None]:
        """Check shapes (against the fitted ones after fit) and move inputs to the device."""
        b, n, c = check_logits(logits)
        if y is not None:
            check_labels(y, n, c, unlabelled=self.uses_unlabelled)
        if self.is_fitted:
            if b != self.num_backbones_ or c != self.num_classes_:
                raise FitError(
                    f"{self.name} was fitted on {self.num_backbones_} backbones x "
                    f"{self.num_classes_} classes; got logits for {b} x {c}"
                )
        feats = self._prepare_features(features, b, n)
        z = to_tensor(logits, self.device, torch.float32)
        labels = None if y is None else to_tensor(y, self.device, torch.int64)
        return feats, z, labels

    def _prepare_features(
        self, features: FeaturesLike, b: int, n: int
    ) -> list[torch.Tensor] | None:
        if features is None:
            if self.uses_features:
                raise FitError(f"{self.name} reads the backbones' features; pass features=[...]")
            return None
        if len(features) != b:
            raise FitError(f"got features for {len(features)} backbones but logits for {b}")
        dims = []
        for i, f in enumerate(features):
            if len(f.shape) != 2 or f.shape[0] != n:
                raise FitError(
                    f"features[{i}] must have shape ({n}, D) to match the logits; "
                    f"got {tuple(f.shape)}"
                )
            dims.append(int(f.shape[1]))
        if self.is_fitted and self.feature_dims_ is not None and dims != self.feature_dims_:
            raise FitError(
                f"{self.name} was fitted on feature dims {self.feature_dims_}; got {dims}"
            )
        if not self.uses_features:
            return None
        return [to_tensor(f, self.device, torch.float32) for f in features]

    def _check_class_counts(self, y: torch.Tensor, c: int) -> None:
        if self.min_per_class < 1:
            return
        counts = torch.bincount(y[y >= 0], minlength=c)
        short = torch.nonzero(counts < self.min_per_class).flatten().tolist()
        if short:
            shown = ", ".join(map(str, short[:5])) + (" ..." if len(short) > 5 else "")
            raise FitError(
                f"{self.name} needs >= {self.min_per_class} labelled example per class; "
                f"{len(short)} of {c} classes have fewer (classes {shown})"
            )

    # ---- estimator API -------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "num_backbones_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise FitError(
                f"{type(self).__name__} is not fitted yet; call fit(features, logits, y) first"
            )

    def fit(self, features: FeaturesLike, logits: ArrayLike, y: ArrayLike) -> Combiner:
        """Learn from a labelled hold-out (never the test split); returns ``self``."""
        self._validate_params()
        for attr in ("num_backbones_", "num_classes_", "feature_dims_"):
            self.__dict__.pop(attr, None)  # refitting starts from scratch
        feats, z, labels = self._prepare(features, logits, y)
        assert labels is not None
        if not torch.isfinite(z).all():
            raise FitError("logits contain NaN or infinite values")
        if feats is not None and not all(torch.isfinite(f).all() for f in feats):
            raise FitError("features contain NaN or infinite values")
        self._check_class_counts(labels, z.shape[2])
        width = z.shape[0] * z.shape[2] + (
            sum(f.shape[1] for f in feats) if feats is not None else 0
        )
        with torch.enable_grad(), threads_for(z.shape[1] * width, z.device):
            self._fit(feats, z, labels)
        self.num_backbones_ = int(z.shape[0])
        self.num_classes_ = int(z.shape[2])
        self.feature_dims_ = None if features is None else [int(f.shape[1]) for f in features]
        return self

    def predict_logits(self, features: FeaturesLike, logits: ArrayLike) -> torch.Tensor:
        """(N, C) fused scores on ``device``; rows are independent, so callers may chunk N."""
        self._check_fitted()
        feats, z, _ = self._prepare(features, logits, None)
        with torch.no_grad():
            return self._predict_logits(feats, z)

    def predict_proba(self, features: FeaturesLike, logits: ArrayLike) -> torch.Tensor:
        """(N, C) class probabilities, rows sum to 1."""
        return torch.softmax(self.predict_logits(features, logits), dim=-1)

    def predict(self, features: FeaturesLike, logits: ArrayLike) -> torch.Tensor:
        """(N,) int64 predicted classes."""
        return self.predict_logits(features, logits).argmax(dim=-1)

    # ---- subclass hooks ------------------------------------------------------------------
    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        """Static combiners learn nothing."""

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Fitted state beyond the shapes: (JSON metadata, tensors)."""
        return {}, {}

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of ``_get_fitted``."""

    # ---- saved state ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description: registry name, parameters, fitted metadata."""
        fitted = None
        if self.is_fitted:
            meta, _ = self._get_fitted()
            fitted = {
                "num_backbones": self.num_backbones_,
                "num_classes": self.num_classes_,
                "feature_dims": self.feature_dims_,
                **meta,
            }
        return {
            "format_version": STATE_FORMAT_VERSION,
            "name": self.name,
            "params": self.get_params(),
            "fitted": fitted,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Fitted tensors (CPU, contiguous) ready for ``safetensors.torch.save_file``."""
        self._check_fitted()
        _, tensors = self._get_fitted()
        return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    @classmethod
    def from_state(
        cls,
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        *,
        device: str | None = None,
    ) -> Combiner:
        """Rebuild a fitted combiner from ``config()`` + ``state_dict()`` (optionally elsewhere)."""
        if config.get("name") != cls.name:
            raise FitError(f"config is for combiner {config.get('name')!r}, not {cls.name!r}")
        if config.get("format_version") != STATE_FORMAT_VERSION:
            raise FitError(f"unsupported combiner state version {config.get('format_version')!r}")
        params = dict(config["params"])
        if device is not None:
            params["device"] = device
        obj = cls(**params)
        fitted = config.get("fitted")
        if fitted is None:
            return obj
        meta = dict(fitted)
        obj.num_backbones_ = int(meta.pop("num_backbones"))
        obj.num_classes_ = int(meta.pop("num_classes"))
        dims = meta.pop("feature_dims")
        obj.feature_dims_ = None if dims is None else [int(d) for d in dims]
        tensors = {k: v.to(obj.device) for k, v in state_dict.items()}
        obj._set_fitted(meta, tensors)
        return obj
