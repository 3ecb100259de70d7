"""Cascade + NLC: run backbones cheapest first and stop as soon as the ensemble so far is sure.

Stage p uses the first p+1 backbones of ``order_`` (default: ascending cost) and its own
controller (NLC by default), fitted on that prefix only -- at stage p nothing else has run.
An input exits at the first stage whose maximum softmax probability reaches ``threshold_``
(``clipfuse.cascade.threshold``); its cost is the summed cost of the backbones run so far.

The threshold is calibrated on the labelled hold-out, never on test, to one of: a fixed
``threshold``; ``target_gflops`` (largest threshold whose mean cost per image is within it);
``target_accuracy`` (cheapest threshold reaching it); or by default the hold-out accuracy of
the full cascade (all backbones), i.e. "the same answers for less compute". Confidences and
correctness used for calibration are cross-fitted (``calibration_folds``-fold: each row scored
by stage controllers fitted without it) when every class has >= 2 labelled rows; otherwise
(1-shot) they are in-sample, which over-states confidence, so the cascade exits earlier on
test than on the hold-out -- accuracy and compute on test are always measured, never assumed.
Cost: ``calibration_folds + 1`` controller fits per stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from clipfuse.cascade.threshold import (
    operating_points,
    threshold_for_accuracy,
    threshold_for_cost,
)
from clipfuse.combiners._compose import ControllerOwner, learns_from_labels
from clipfuse.combiners.base import ArrayLike, Combiner, FeaturesLike
from clipfuse.combiners.costs import resolve_costs, stage_costs
from clipfuse.combiners.folds import can_crossfit, crossfit_proba
from clipfuse.combiners.registry import combiner_from_state, register_combiner
from clipfuse.errors import FitError

# fetch(backbone, rows) -> (features (r, D_b), zero-shot logits (r, C)) of those input rows
Fetch = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@register_combiner(groups=("compute",))
class Cascade(ControllerOwner, Combiner):
    """Cheapest-first cascade of prefix controllers with a calibrated confidence exit.

    Fitted: ``order_``, ``stage_costs_`` (cumulative cost per stage), ``cost_unit_``
    ("GFLOPs", or "backbones" without ``gflops``), ``controllers_``, ``threshold_``,
    ``threshold_rule_``, ``calibration_`` (rows used, hold-out accuracy and mean cost at the
    threshold), ``required_backbones_`` (the backbones the cascade may run, in order).
    """

    name = "cascade"
    uses_features = True
    min_per_class = 1
    supports_staged = True

    def __init__(
        self,
        *,
        gflops: list[float] | None = None,
        order: list[int] | None = None,
        threshold: float | None = None,
        target_gflops: float | None = None,
        target_accuracy: float | None = None,
        calibration_folds: int = 3,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.gflops = gflops
        self.order = order
        self.threshold = threshold
        self.target_gflops = target_gflops
        self.target_accuracy = target_accuracy
        self.calibration_folds = calibration_folds

    def _validate_params(self) -> None:
        given = [
            k
            for k in ("threshold", "target_gflops", "target_accuracy")
            if getattr(self, k) is not None
        ]
        if len(given) > 1:
            raise FitError(
                f"cascade: give at most one of threshold, target_gflops, target_accuracy; got {given}"
            )
        if self.target_accuracy is not None and not 0 <= self.target_accuracy <= 1:
            raise FitError(
                f"cascade: target_accuracy is a fraction in [0, 1]; got {self.target_accuracy}"
            )
        if int(self.calibration_folds) == 1 or int(self.calibration_folds) < 0:
            raise FitError("cascade: calibration_folds must be 0 (in-sample) or >= 2")
        self._new_controller()  # an unknown controller name fails here

    def _resolve_order(self, costs: list[float]) -> list[int]:
        b = len(costs)
        if self.order is None:
            return sorted(range(b), key=lambda i: (costs[i], i))
        order = [int(i) for i in self.order]
        if not order or len(set(order)) != len(order) or min(order) < 0 or max(order) >= b:
            raise FitError(
                f"cascade: order must list distinct backbone indices in [0, {b}); got {self.order}"
            )
        return order

    # ---- fit -----------------------------------------------------------------------------
    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        assert features is not None
        costs, unit = resolve_costs(self.gflops, z.shape[0])
        order = self._resolve_order(costs)
        prefixes = [order[: p + 1] for p in range(len(order))]
        cum = stage_costs(costs, order)
        controllers = [
            self._new_controller().fit([features[i] for i in pre], z[pre], y) for pre in prefixes
        ]
        folds = int(self.calibration_folds)
        probe = controllers[0]
        if folds >= 2 and learns_from_labels(probe) and can_crossfit(y, z.shape[2]):
            conf, pred = self._crossfit_stages(features, z, y, prefixes, folds)
            rows = f"cross-fitted ({folds}-fold) stage controllers on {y.numel()} rows"
        else:
            conf, pred = _stage_outputs(controllers, prefixes, features, z)
            rows = f"in-sample stage controllers on {y.numel()} rows" + (
                "" if learns_from_labels(probe) else " (the controller learns nothing)"
            )
        correct = pred == y.unsqueeze(0)
        threshold, rule, met = self._calibrate(conf, correct, cum)
        point = operating_points(conf, correct, cum, torch.tensor([threshold]))[0]
        self.order_, self.required_backbones_ = order, list(order)
        self.stage_costs_, self.cost_unit_ = [float(c) for c in cum], unit
        self.controllers_, self.threshold_, self.threshold_rule_ = controllers, threshold, rule
        self.calibration_ = {"rows": rows, "accuracy": point.accuracy, "mean_cost": point.mean_cost,
                             "mean_backbones": point.mean_backbones, "target_met": met}  # fmt: skip

    def _crossfit_stages(
        self,
        features: list[torch.Tensor],
        z: torch.Tensor,
        y: torch.Tensor,
        prefixes: list[list[int]],
        folds: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(confidence, prediction) (P, N) of out-of-fold stage controllers (same folds per stage)."""
        probas = [
            crossfit_proba(
                self._new_controller, [features[i] for i in pre], z[pre], y, folds, int(self.seed)
            )
            for pre in prefixes
        ]
        conf, pred = torch.stack(probas).max(dim=-1)
        return conf, pred

    def _calibrate(
        self, conf: torch.Tensor, correct: torch.Tensor, cum: torch.Tensor
    ) -> tuple[float, str, bool]:
        if self.threshold is not None:
            return float(self.threshold), "fixed threshold", True
        if self.target_gflops is not None:
            t = threshold_for_cost(conf, cum, float(self.target_gflops))
            return t, f"largest threshold with hold-out mean cost <= {self.target_gflops:g}", True
        if self.target_accuracy is not None:
            target, what = float(self.target_accuracy), f"{self.target_accuracy:g}"
        else:
            target = float(correct[-1].float().mean())
            what = f"{target:.4f} (the full cascade's hold-out accuracy)"
        t, met = threshold_for_accuracy(conf, correct, cum, target)
        return t, f"cheapest threshold with hold-out accuracy >= {what}", met

    # ---- predict -------------------------------------------------------------------------
    def run_staged(self, n: int, fetch: Fetch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fused logits (N, C), cost per input (N,), backbones run per input (N,)).

        Backbone ``order_[p]`` is fetched only for the inputs still undecided after stage p-1,
        so a caller that encodes images in ``fetch`` computes nothing for inputs that exited.
        """
        self._check_fitted()
        active = torch.arange(n, device=self.device)
        out = torch.empty(n, self.num_classes_, device=self.device)
        used = torch.zeros(n, dtype=torch.int64, device=self.device)
        feats: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        last = len(self.order_) - 1
        for p, b in enumerate(self.order_):
            if active.numel() == 0:
                break
            f_b, z_b = fetch(b, active)
            feats.append(f_b.to(self.device, torch.float32))
            logits.append(z_b.to(self.device, torch.float32))
            fused = self.controllers_[p].predict_logits(feats, torch.stack(logits))
            conf = torch.softmax(fused, dim=-1).amax(dim=-1)
            done = torch.ones_like(conf, dtype=torch.bool) if p == last else conf >= self.threshold_
            out[active[done]] = fused[done]
            used[active[done]] = p + 1
            keep = ~done
            active, feats, logits = (
                active[keep],
                [f[keep] for f in feats],
                [x[keep] for x in logits],
            )
        costs = torch.tensor(self.stage_costs_, device=self.device)
        return out, costs[used - 1], used

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        assert features is not None
        return self.run_staged(z.shape[1], _cached_fetch(features, z))[0]

    def predict_with_cost(
        self, features: FeaturesLike, logits: ArrayLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predictions (N,), cost per input (N,), backbones run per input (N,)).

        All backbones' cached features exist here, but each input is charged only for the
        backbones its prefix ran, as at deployment.
        """
        self._check_fitted()
        feats, z, _ = self._prepare(features, logits, None)
        assert feats is not None
        with torch.no_grad():
            fused, cost, used = self.run_staged(z.shape[1], _cached_fetch(feats, z))
        return fused.argmax(dim=-1), cost, used

    def stage_outputs(
        self, features: FeaturesLike, logits: ArrayLike
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(confidence (P, N), prediction (P, N)) of every stage for every input (for curves)."""
        self._check_fitted()
        feats, z, _ = self._prepare(features, logits, None)
        assert feats is not None
        prefixes = [self.order_[: p + 1] for p in range(len(self.order_))]
        with torch.no_grad():
            return _stage_outputs(self.controllers_, prefixes, feats, z)

    # ---- saved state ---------------------------------------------------------------------
    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {
            f"stage{p}.{k}": v
            for p, c in enumerate(self.controllers_)
            for k, v in c.state_dict().items()
        }
        meta = {
            "order": self.order_,
            "stage_costs": self.stage_costs_,
            "cost_unit": self.cost_unit_,
            "threshold": self.threshold_,
            "threshold_rule": self.threshold_rule_,
            "calibration": self.calibration_,
            "controllers": [c.config() for c in self.controllers_],
        }
        return meta, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.order_ = [int(i) for i in meta["order"]]
        self.required_backbones_ = list(self.order_)
        self.stage_costs_ = [float(c) for c in meta["stage_costs"]]
        self.cost_unit_ = str(meta["cost_unit"])
        self.threshold_ = float(meta["threshold"])
        self.threshold_rule_ = str(meta["threshold_rule"])
        self.calibration_ = dict(meta["calibration"])
        self.controllers_ = []
        for p, config in enumerate(meta["controllers"]):
            prefix = f"stage{p}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            self.controllers_.append(combiner_from_state(config, state, device=self.device))


def _cached_fetch(features: list[torch.Tensor], z: torch.Tensor) -> Fetch:
    return lambda b, rows: (features[b][rows], z[b, rows])


def _stage_outputs(
    controllers: list[Combiner],
    prefixes: list[list[int]],
    features: list[torch.Tensor],
    z: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(max softmax probability (P, N), argmax (P, N)) of each stage controller on all rows."""
    confs, preds = [], []
    for ctrl, prefix in zip(controllers, prefixes):
        proba = ctrl.predict_proba([features[i] for i in prefix], z[prefix])
        conf, pred = proba.max(dim=-1)
        confs.append(conf)
        preds.append(pred)
    return torch.stack(confs), torch.stack(preds)
