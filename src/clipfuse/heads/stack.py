"""Combiners over per-backbone heads: linear probe / Tip-Adapter / Tip-Adapter-F + a controller.

Each registered combiner (``lp_nlc``, ``tip_mean``, ...) is a head bank (one head per backbone,
``clipfuse.heads``) whose logits replace the zero-shot logits as the input of an inner combiner
from the registry (``best_single``, ``mean_logits``, ``super_learner``, ``nlc``), so the fair
controls of docs/method.md §6.1-6.2 -- the same heads ensembled by mean logits and by Super Learner,
and the best single head chosen on the hold-out -- come from the same code as ``*_nlc``.

Label protocols (``protocol``):
- ``"crossfit"`` (few-shot, default): heads and controller share the k-shot hold-out. The
  controller is trained on cross-fitted head logits -- for each row, a head fitted without it
  (K-fold for linear probes and Tip-Adapter-F, exact leave-one-out for the training-free
  Tip-Adapter) -- and the heads used at prediction are refitted on all rows. When a class has
  a single labelled row (1-shot) no head can be fitted without it and still know the class, so
  the controller falls back to in-sample head logits; ``controller_rows_`` records which.
- ``"split"`` (the paper's linear-probe protocol): heads on ``1 - controller_fraction`` of the
  hold-out (90%), controller on the rest (10%), stratified; use it with a large hold-out
  (e.g. ``--fraction 1.0`` of train).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from clipfuse.combiners._compose import build_combiner, learns_from_labels
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.folds import can_crossfit, stratified_split
from clipfuse.combiners.registry import combiner_from_state, make_combiner, register_combiner
from clipfuse.errors import FitError
from clipfuse.heads.base import HeadBank, rows_of
from clipfuse.heads.linear import LinearProbeHeads
from clipfuse.heads.tip import TipAdapterFHeads, TipAdapterHeads
from clipfuse.heads.zeroshot_probe import ZeroShotProbeHeads

HEAD_KINDS: dict[str, type[HeadBank]] = {
    cls.kind: cls
    for cls in (LinearProbeHeads, TipAdapterHeads, TipAdapterFHeads, ZeroShotProbeHeads)
}
PROTOCOLS = ("crossfit", "split")


class HeadStack(Combiner):
    """Heads of kind ``head_kind`` per backbone, fused by the registered ``inner_name``.

    Parameters: ``protocol`` and ``controller_fraction`` (see the module doc), ``folds``
    (cross-fitting folds), ``head_params`` (dict for the head bank, e.g. ``{"max_iter": 50}``
    for linear probes or ``{"epochs": 10}`` for Tip-Adapter-F), ``inner_params`` (dict for the
    inner combiner, e.g. ``{"steps": 500}`` for NLC), ``seed`` (folds, splits, inner seed).
    Fitted: ``heads_`` (the head bank), ``inner_`` (the fitted inner combiner),
    ``controller_rows_`` (how the inner combiner's training logits were produced).
    """

    head_kind: ClassVar[str] = ""
    inner_name: ClassVar[str] = ""
    uses_features = True
    min_per_class = 1
    nested_params = {"inner": "inner_params", "head": "head_params"}
    param_choices = {"protocol": PROTOCOLS}

    def __init__(
        self,
        *,
        protocol: str = "crossfit",
        controller_fraction: float = 0.1,
        folds: int = 3,
        head_params: dict[str, Any] | None = None,
        inner_params: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(device=device)
        self.protocol = protocol
        self.controller_fraction = controller_fraction
        self.folds = folds
        self.head_params = head_params
        self.inner_params = inner_params
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        self._new_heads()  # unknown or bad head parameters fail here, before any work

    def _new_heads(self) -> HeadBank:
        return HEAD_KINDS[self.head_kind](self.head_params, device=self.device)

    def _new_inner(self, seed: int) -> Combiner:
        return build_combiner(self.inner_name, self.inner_params, seed=seed, device=self.device)

    # ---- fit / predict -------------------------------------------------------------------
    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        assert features is not None
        c, seed = z.shape[2], int(self.seed)
        heads = self._new_heads()
        inner = self._new_inner(seed)
        if self.protocol == "split":
            ctrl = stratified_split(y, float(self.controller_fraction), seed, c)
            heads.fit(rows_of(features, ~ctrl), z[:, ~ctrl], y[~ctrl], c, seed)
            feats_c, y_c = rows_of(features, ctrl), y[ctrl]
            z_c = heads.logits(feats_c, z[:, ctrl])
            rows = f"split: heads on {int((~ctrl).sum())} rows, controller on {int(ctrl.sum())}"
        elif learns_from_labels(inner) and can_crossfit(y, c):
            feats_c, y_c = features, y
            z_c = heads.fit_crossfit(features, z, y, c, int(self.folds), seed)
            how = "leave-one-out" if heads.kind == "tip" else f"{int(self.folds)}-fold"
            rows = f"cross-fitted ({how}) head logits on all {y.numel()} rows"
        else:
            heads.fit(features, z, y, c, seed)
            feats_c, y_c, z_c = features, y, heads.logits(features, z)
            rows = (
                "in-sample head logits (a class has < 2 labelled rows: no cross-fitting)"
                if learns_from_labels(inner)
                else "not used (the inner combiner learns nothing)"
            )
        inner.fit(feats_c, z_c, y_c)
        self.heads_, self.inner_, self.controller_rows_ = heads, inner, rows

    def head_logits(self, features: list, logits: Any) -> torch.Tensor:
        """(B, N, C) per-backbone head logits (e.g. to report every backbone's head alone)."""
        self._check_fitted()
        feats, z, _ = self._prepare(features, logits, None)
        assert feats is not None
        with torch.no_grad():
            return self.heads_.logits(feats, z)

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        assert features is not None
        return self.inner_.predict_logits(features, self.heads_.logits(features, z))

    def _nested_defaults(self, prefix: str) -> dict[str, Any]:
        if prefix != "inner":
            return {}
        defaults = make_combiner(self.inner_name).get_params(deep=True)
        defaults.pop("device", None)
        return defaults

    def chosen_backbone(self) -> int | None:
        self._check_fitted()
        return self.inner_.chosen_backbone()

    @property
    def chosen_(self) -> int:
        """The backbone picked by a ``best_single`` inner combiner (AttributeError otherwise)."""
        if "inner_" not in self.__dict__ or not hasattr(self.inner_, "chosen_"):
            raise AttributeError("chosen_")
        return int(self.inner_.chosen_)

    # ---- saved state ---------------------------------------------------------------------
    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        head_meta, head_tensors = self.heads_.state()
        tensors = {f"head.{k}": v for k, v in head_tensors.items()}
        tensors.update({f"inner.{k}": v for k, v in self.inner_.state_dict().items()})
        meta = {"heads": head_meta, "inner": self.inner_.config(),
                "controller_rows": self.controller_rows_}  # fmt: skip
        return meta, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        head_t = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
        inner_t = {k[len("inner.") :]: v for k, v in tensors.items() if k.startswith("inner.")}
        heads = HEAD_KINDS[meta["heads"]["kind"]](meta["heads"]["params"], device=self.device)
        self.heads_ = heads.load_state(meta["heads"], head_t)
        self.inner_ = combiner_from_state(meta["inner"], inner_t, device=self.device)
        self.controller_rows_ = meta["controller_rows"]


@register_combiner(tier="experimental")
class ComposedHeadStack(HeadStack):
    """``HeadStack(head=, final=)`` by composition: any head bank object and any (unfitted)
    combiner object on top, e.g. ``head_stack(head=LinearProbeHeads({"max_iter": 50}),
    final=make_combiner("safe_conf_mix"))``. Both are kept as JSON specs (head kind + params,
    combiner name + params), so the fitted stack saves and loads like any combiner.
    """

    name = "head_stack"
    nested_params: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        head: HeadBank | dict[str, Any] | None = None,
        final: Combiner | dict[str, Any] | None = None,
        protocol: str = "crossfit",
        controller_fraction: float = 0.1,
        folds: int = 3,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(protocol=protocol, controller_fraction=controller_fraction,
                         folds=folds, seed=seed, device=device)  # fmt: skip
        self.head: dict[str, Any] = _head_spec(head)
        self.final: dict[str, Any] = _final_spec(final)

    def set_params(self, **params: Any) -> ComposedHeadStack:
        super().set_params(**params)
        self.head, self.final = _head_spec(self.head), _final_spec(self.final)
        return self

    @classmethod
    def _param_names(cls) -> list[str]:
        return ["head", "final", "protocol", "controller_fraction", "folds", "seed", "device"]

    def _validate_params(self) -> None:
        if self.head.get("kind") not in HEAD_KINDS:
            raise FitError(f"head_stack: unknown head kind {self.head.get('kind')!r}; "
                           f"known: {sorted(HEAD_KINDS)}")  # fmt: skip
        self._new_inner(0)  # an unknown final combiner or parameter fails here
        super()._validate_params()

    def _new_heads(self) -> HeadBank:
        return HEAD_KINDS[self.head["kind"]](self.head.get("params"), device=self.device)

    def _new_inner(self, seed: int) -> Combiner:
        return build_combiner(self.final["name"], self.final.get("params"), seed=seed,
                              device=self.device)  # fmt: skip

    def _nested_defaults(self, prefix: str) -> dict[str, Any]:
        return {}


def _head_spec(head: HeadBank | dict[str, Any] | None) -> dict[str, Any]:
    """A head bank as JSON: its kind and parameters (default: linear probes)."""
    head = head if head is not None else LinearProbeHeads()
    return (
        {"kind": head.kind, "params": dict(head.params)}
        if isinstance(head, HeadBank)
        else dict(head)
    )


def _final_spec(final: Combiner | dict[str, Any] | None) -> dict[str, Any]:
    """An unfitted combiner as JSON: its registry name and parameters (default: NLC)."""
    if final is None or isinstance(final, Combiner):
        params = (final or make_combiner("nlc")).get_params(deep=False)
        params.pop("device", None)
        return {"name": (final or make_combiner("nlc")).name, "params": params}
    return dict(final)


_HEADS = {  # head kind -> (registry prefix, class-name prefix, title)
    "linear": ("lp", "LinearProbe", "linear-probe"),
    "tip": ("tip", "TipAdapter", "Tip-Adapter"),
    "tipf": ("tipf", "TipAdapterF", "Tip-Adapter-F"),
}
_INNERS = {  # registry suffix -> (inner combiner, class-name suffix, what it does)
    "": ("best_single", "Best", "the backbone whose head is best on the (cross-fitted) hold-out"),
    "_mean": ("mean_logits", "Mean", "the mean of all backbones' head logits"),
    "_super_learner": ("super_learner", "SuperLearner", "Super Learner over the head logits"),
    "_nlc": ("nlc", "NLC", "NLC over the head logits"),
}


def _variant(head_kind: str, suffix: str) -> type[HeadStack]:
    prefix, cls_prefix, title = _HEADS[head_kind]
    inner, cls_suffix, what = _INNERS[suffix]
    cls_name = cls_prefix + cls_suffix
    doc = f"Per-backbone {title} heads; prediction: {what} (see ``HeadStack``)."
    attrs = {"name": prefix + suffix, "head_kind": head_kind,
             "inner_name": inner, "__doc__": doc, "__module__": __name__}  # fmt: skip
    return type(cls_name, (HeadStack,), attrs)


HEAD_COMBINERS: tuple[type[HeadStack], ...] = tuple(
    register_combiner(_variant(kind, suffix), groups=("heads",))
    for kind in ("linear", "tip", "tipf")
    for suffix in _INNERS
)
