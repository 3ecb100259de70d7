"""Linear-probe heads: multinomial logistic regression on each backbone's frozen features.

Objective per backbone (features are L2-normalised CLIP embeddings):
``mean_i CE(x_i W^T + b, y_i) + weight_decay / (2 C) * ||W||_F^2``. Dividing the penalty by the
number of classes C keeps a weight decay's meaning independent of C (at the optimum
``||w_c|| ~ (1 - p) / weight_decay`` whatever C is), so one grid serves 10 and 1,000 classes.
Full batch, L-BFGS with strong-Wolfe line search (deterministic, no learning rate), started from
the class-mean prototypes, which is already a sensible classifier and so needs few iterations.

Weight decay is chosen WITHOUT the test split: k-fold cross-validation (stratified, seeded) on
the head's own training rows when every class has >= 2 of them -- highest out-of-fold accuracy,
ties broken by out-of-fold NLL; the grid runs from strong to weak regularisation, each fold
warm-started from its previous solution. With a single row in some class (1-shot) there is
nothing to validate on, and the documented fixed default ``default_weight_decay`` is used.
The out-of-fold logits at the chosen weight decay are exactly the cross-fitted head logits a
controller needs (``fit_crossfit``), so stacking costs no extra fits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners._optim import minimise_lbfgs
from clipfuse.combiners.folds import can_crossfit, stratified_folds
from clipfuse.errors import FitError
from clipfuse.heads.base import HeadBank

PROTOTYPE_SCALE = 10.0  # start: cosine to the class mean x 10, a CLIP-like logit spread


def prototypes(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, D) L2-normalised class means (zero rows for absent classes)."""
    sums = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, y, x)
    return F.normalize(sums, dim=1)


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    init: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    offset: torch.Tensor | None = None,
    penalise_bias: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (C, D), b (C,)) minimising mean CE + weight_decay / (2C) ||W||^2, from ``init``.

    L-BFGS stops after ``max_iter`` iterations or when the loss changes by < 1e-6 per step
    (far below what moves an argmax); the bias is not penalised unless ``penalise_bias``.
    ``offset`` (N, C) is added to the logits (a residual fit on top of fixed logits).
    """
    w = init[0].detach().clone().requires_grad_(True)
    b = init[1].detach().clone().requires_grad_(True)
    scale = 0.5 * weight_decay / num_classes

    def loss() -> torch.Tensor:
        out = x @ w.T + b if offset is None else offset + x @ w.T + b
        penalty = w.pow(2).sum() + (b.pow(2).sum() if penalise_bias else 0.0)
        return F.cross_entropy(out, y) + scale * penalty

    with torch.enable_grad():
        minimise_lbfgs([w, b], loss, max_iter, tolerance_grad=1e-7, tolerance_change=1e-6)
    return w.detach(), b.detach()


class LinearProbeHeads(HeadBank):
    """Per-backbone logistic regression; fitted tensors ``weight`` (C, D) and ``bias`` (C,)."""

    kind = "linear"
    DEFAULTS = {
        "weight_decays": [1e-3, 1e-2, 1e-1, 1.0],
        "default_weight_decay": 0.1,
        "cv_folds": 3,
        "max_iter": 100,
    }

    def _validate(self) -> None:
        super()._validate()
        if not self.params["weight_decays"] or min(self.params["weight_decays"]) <= 0:
            raise FitError(
                f"{self.kind} heads: weight_decays must be a non-empty list of values > 0"
            )

    penalise_bias = False  # subclasses that fit a residual penalise the whole (W, b)

    def _init(self, x: torch.Tensor, y: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        return PROTOTYPE_SCALE * prototypes(x, y, c), torch.zeros(c, device=x.device)

    def _inputs(
        self, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hook: (the features the probe sees, fixed logits it is a residual on, or None)."""
        return features, None

    def _fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        c: int,
        wd: float,
        init: tuple[torch.Tensor, torch.Tensor],
        offset: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        max_iter = int(self.params["max_iter"])
        return fit_logistic(x, y, c, wd, init, max_iter, offset, self.penalise_bias)

    def _select(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        c: int,
        folds: torch.Tensor,
        offset: torch.Tensor | None = None,
    ) -> tuple[float, torch.Tensor, list[dict[str, float]]]:
        """(chosen weight decay, its out-of-fold logits (N, C), the CV table)."""
        num_folds = int(folds.max()) + 1
        state = [self._init(x[folds != k], y[folds != k], c) for k in range(num_folds)]
        table: list[dict[str, float]] = []
        best: tuple[float, float, float, torch.Tensor] | None = None
        for wd in sorted(self.params["weight_decays"], reverse=True):  # strong -> weak
            oof = torch.empty(x.shape[0], c, device=x.device)
            for k in range(num_folds):
                train = folds != k
                off = None if offset is None else offset[train]
                state[k] = self._fit(x[train], y[train], c, wd, state[k], off)
                oof[~train] = x[~train] @ state[k][0].T + state[k][1]
            if offset is not None:
                oof += offset
            acc = float((oof.argmax(1) == y).float().mean())
            nll = float(F.cross_entropy(oof, y))
            table.append({"weight_decay": wd, "cv_accuracy": acc, "cv_nll": nll})
            if best is None or (acc, -nll) > (best[1], -best[2]):
                best = (wd, acc, nll, oof)
        assert best is not None
        return best[0], best[3], table

    def _fit_rows(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        y: torch.Tensor,
        c: int,
        folds: torch.Tensor | None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], torch.Tensor | None]:
        x, offset = self._inputs(features, logits)
        if folds is None:
            wd, oof = float(self.params["default_weight_decay"]), None
            meta = {"selection": "fixed default (a class has < 2 labelled rows)"}
        else:
            wd, oof, table = self._select(x, y, c, folds, offset)
            meta = {"selection": f"{int(folds.max()) + 1}-fold cross-validation", "cv": table}
        w, b = self._fit(x, y, c, wd, self._init(x, y, c), offset)
        return {"weight": w, "bias": b}, {"weight_decay": wd, **meta}, oof

    def _fit_one(
        self, features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, c: int, seed: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        folds = None
        if can_crossfit(y, c):
            folds = stratified_folds(y, int(self.params["cv_folds"]), seed)
        tensors, meta, _ = self._fit_rows(features, logits, y, c, folds)
        return tensors, meta

    def _logits_one(self, b: int, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        head = self.fitted_[b]
        x, offset = self._inputs(features, logits)
        out = x @ head["weight"].T + head["bias"]
        return out if offset is None else offset + out

    def fit_crossfit(
        self,
        features: list[torch.Tensor],
        logits: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        num_folds: int,
        seed: int,
    ) -> torch.Tensor:
        """The weight-decay CV's own out-of-fold logits (same folds for every backbone)."""
        folds = stratified_folds(y, num_folds, seed)
        self.fitted_, self.meta_, oofs = [], [], []
        for x, z in zip(features, logits):
            tensors, meta, oof = self._fit_rows(x, z, y, num_classes, folds)
            assert oof is not None
            self.fitted_.append(tensors)
            self.meta_.append(meta)
            oofs.append(oof)
        return torch.stack(oofs)
