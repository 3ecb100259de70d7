"""Estimator base class shared by every combiner: parameters, input checks, saved state.

Follows the scikit-learn contract (ARCHITECTURE.md): ``__init__`` stores keyword parameters
only, ``fit`` learns and sets attributes ending in ``_``, and a fitted combiner can be written
as ``config()`` (JSON) + ``state_dict()`` (tensors for safetensors) and rebuilt with
``from_state`` -- no pickle anywhere.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from clipfuse._validation import check_labels, check_logits, to_tensor
from clipfuse.combiners._optim import threads_for
from clipfuse.errors import FitError, NotFittedError

ArrayLike = torch.Tensor | np.ndarray
FeaturesLike = Sequence[ArrayLike] | None

STATE_FORMAT_VERSION = 1
SCORE_CHUNK = 4096  # rows per predict call in score()

# Parameters that mean the same wherever they appear (combiners, head banks): (test, what the
# value must be).
PARAM_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(
        ("max_iter", "rounds", "iterations", "hidden", "steps", "batch_size", "shortlist"),
        (lambda v: v >= 1, ">= 1"),
    ),
    **dict.fromkeys(
        ("shrinkage", "strength", "anchor_weight", "weight_decay", "residual_penalty", "alpha",
         "beta", "epochs"),
        (lambda v: v >= 0, ">= 0"),
    ),  # fmt: skip
    **dict.fromkeys(("tau", "lr", "power", "default_weight_decay"), (lambda v: v > 0, "> 0")),
    **dict.fromkeys(("folds", "cv_folds"), (lambda v: v >= 2, ">= 2")),
    "max_prior_ratio": (lambda v: v >= 1, ">= 1"),
    "keep": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "backbone_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "se_rule": (lambda v: v is None or v >= 0, ">= 0 (standard errors) or None"),
}


class Combiner:
    """Fuses B backbones' logits ``(B, N, C)`` (and optionally their features) into ``(N, C)``.

    Subclasses set ``name`` (the registry key), declare their parameters as keyword-only
    ``__init__`` arguments, and implement ``_fit`` / ``_predict_logits``; learned ones also
    implement ``_get_fitted`` / ``_set_fitted`` so they can be saved without pickle.
    ``predict_proba`` is always ``softmax(predict_logits)``: combiners whose natural output is a
    probability return its log, so one evaluation path serves them all.
    """

    name: ClassVar[str] = ""
    # Declared capabilities (read these instead of probing with hasattr):
    uses_features: ClassVar[bool] = False  # True: features are required in fit and predict
    min_per_class: ClassVar[int] = 0  # examples per class that fit needs (1 for learned weights)
    has_temperatures: ClassVar[bool] = False  # predict_temperatures(features) -> (N, B)
    supports_staged: ClassVar[bool] = False  # run_staged / predict_with_cost (cascades)
    selects_backbones: ClassVar[bool] = False  # fit picks a subset (see required_backbones)
    nested_params: ClassVar[dict[str, str]] = {}  # get/set_params prefix -> its params dict
    param_choices: ClassVar[dict[str, tuple[Any, ...]]] = {}  # parameter -> its allowed values
    uses_unlabelled: ClassVar[bool] = False  # True: fit accepts y == -1 rows (unlabelled images)
    # True: predictions of a batch depend on the whole batch (never default; flagged in tables)
    transductive: ClassVar[bool] = False

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device

    # ---- parameters (scikit-learn style) -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """Keyword-only ``__init__`` parameters; an ``__init__`` that passes ``**params`` on
        adds its base's, so a preset declares only the parameters it adds."""
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                params = inspect.signature(klass.__init__).parameters.values()
                names += [p.name for p in params if p.kind is p.KEYWORD_ONLY]
                if not any(p.kind is p.VAR_KEYWORD for p in params):
                    break
        return list(dict.fromkeys(names))

    def _nested_defaults(self, prefix: str) -> dict[str, Any]:
        """Default parameters of the component behind ``prefix`` (composed combiners)."""
        return {}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters; with ``deep``, a composed combiner's components too, as
        ``prefix__name`` (e.g. ``inner__steps`` of ``lp_nlc``), defaults included."""
        params = {k: getattr(self, k) for k in self._param_names()}
        if deep:
            for prefix, attr in self.nested_params.items():
                nested = {**self._nested_defaults(prefix), **dict(params.get(attr) or {})}
                params.update({f"{prefix}__{k}": v for k, v in nested.items()})
        return params

    def set_params(self, **params: Any) -> Combiner:
        """Change constructor parameters; ``prefix__name`` routes to a component's parameter
        dict. Unknown names are a FitError (typos fail loudly)."""
        known = self._param_names()
        for key, value in params.items():
            prefix, sep, inner = key.partition("__")
            if sep and prefix in self.nested_params:
                attr = self.nested_params[prefix]
                setattr(self, attr, {**dict(getattr(self, attr) or {}), inner: value})
            elif key in known:
                setattr(self, key, value)
            else:
                nested = [f"{p}__..." for p in self.nested_params]
                raise FitError(
                    f"{type(self).__name__} has no parameter {key!r}; known: {known + nested}"
                )
        return self

    def clone(self) -> Combiner:
        """An unfitted copy with the same parameters (scikit-learn's ``clone``)."""
        return type(self)(**copy.deepcopy(self.get_params(deep=False)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:
        """Raise FitError for parameter values that cannot work (checked in fit): here the
        ``param_choices`` and the shared ``PARAM_RULES`` of this class's parameters; subclasses
        add their own checks."""
        for key in self._param_names():
            value, choices = getattr(self, key), self.param_choices.get(key)
            if choices is not None and value not in choices:
                raise FitError(f"{self.name}: {key} must be one of {choices}; got {value!r}")
            ok, must = PARAM_RULES.get(key, (None, ""))
            if ok is not None and not ok(value):
                raise FitError(f"{self.name}: {key} must be {must}; got {value}")

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
        z = to_tensor(logits, torch.float32, self.device)
        labels = None if y is None else to_tensor(y, torch.int64, self.device)
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
        return [to_tensor(f, torch.float32, self.device) for f in features]

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
        return "num_backbones_" in self.__dict__

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call fit(features, logits, y) first"
            )

    def required_backbones(self) -> list[int]:
        """Positions of the backbones prediction reads (all of them unless a subset was chosen)."""
        self._check_fitted()
        return list(range(self.num_backbones_))

    def chosen_backbone(self) -> int | None:
        """The single backbone a selection method picked on its hold-out (None: it fuses)."""
        return None

    def fit_notes(self) -> dict[str, Any]:
        """What fit decided that a results table must show (a fallback it took, a safety
        rule's choice); recorded per run by ``evaluate``. Nothing by default."""
        return {}

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

    @property
    def classes_(self) -> np.ndarray:
        """Class indices ``0..C-1`` that the columns of ``predict_proba`` stand for (set by
        fit; scikit-learn's name). Logits carry no class names: a saved ensemble's ``classes_``
        gives the names."""
        if not self.is_fitted:
            raise AttributeError("classes_ is set by fit")
        return np.arange(self.num_classes_)

    def predict_logits(self, features: FeaturesLike, logits: ArrayLike) -> ArrayLike:
        """(N, C) fused scores; rows are independent, so callers may chunk N. A tensor on
        ``device`` for tensor logits, a numpy array for numpy logits."""
        self._check_fitted()
        feats, z, _ = self._prepare(features, logits, None)
        with torch.no_grad():
            return _like(logits, self._predict_logits(feats, z))

    def predict_proba(self, features: FeaturesLike, logits: ArrayLike) -> ArrayLike:
        """(N, C) class probabilities, rows sum to 1 (numpy for numpy logits)."""
        z = self.predict_logits(features, to_tensor(logits))
        return _like(logits, torch.softmax(z, dim=-1))

    def predict(self, features: FeaturesLike, logits: ArrayLike) -> ArrayLike:
        """(N,) int64 predicted classes (numpy for numpy logits)."""
        return _like(logits, self.predict_logits(features, to_tensor(logits)).argmax(dim=-1))

    def score(self, features: FeaturesLike, logits: ArrayLike, y: ArrayLike) -> float:
        """Top-1 accuracy on labelled data (scikit-learn's ``ClassifierMixin.score``), computed
        in chunks of rows so that large test sets fit in memory."""
        self._check_fitted()
        b, n, c = check_logits(logits)
        check_labels(y, n, c)
        labels = to_tensor(y)
        logits = to_tensor(logits)
        correct = 0
        chunk = n if self.transductive else SCORE_CHUNK  # transductive: the whole set at once
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            feats = None if features is None else [f[rows] for f in features]
            pred = self.predict(feats, logits[:, rows]).cpu()
            correct += int((pred == labels[rows].cpu()).sum())
        return correct / n

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
            "params": self.get_params(deep=False),
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


def _like(reference: ArrayLike, out: torch.Tensor) -> ArrayLike:
    """``out`` as numpy when the caller passed numpy (scikit-learn users), else as is."""
    return out.cpu().numpy() if isinstance(reference, np.ndarray) else out
