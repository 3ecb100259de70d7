"""Weight rules of the weighted pool (``clipfuse.combiners.pool``): one function per rule.

Every rule maps a labelled hold-out ``z`` (B, N, C), ``y`` (N,) -- plus ``y == -1`` rows where the
preset declares ``uses_unlabelled`` -- to one non-negative weight per backbone, so prediction is
always ``sum_b w_b z_b``: inductive, one image at a time, and a backbone with weight 0 is never
loaded or run. A rule reads its parameters from the pool (``p.shrinkage``...). Wrappers compose
rules: ``with_confidence_prior(rule)`` (a label-free prior the rule is pulled toward) and
``with_safety(rule)`` (cross-validated choice between the rule and the best single backbone).
Adding a rule = one function here + one ``preset`` where it is registered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners._optim import minimise_lbfgs, per_backbone_nll
from clipfuse.combiners.folds import cross_val_predict

# Temperatures are kept in [1e-2, 1e2]: on a hold-out the backbone classifies perfectly the NLL
# keeps falling as T -> 0, and the clamp stops that run-away (its gradient is zero outside).
_LOG_T_BOUND = math.log(100.0)
FEW_IMAGES = 100  # below this many images a recorded note says the confidence prior is rough


@dataclass
class PoolFit:
    """What a rule learnt: ``weights`` (B,), JSON ``meta`` and extra ``tensors`` (saved, and set
    on the pool as ``<key>_`` attributes), and ``notes`` that results tables must show."""

    weights: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


Rule = Callable[..., PoolFit]  # rule(pool, z, y, prior=None) -> PoolFit


def _mixed(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.einsum("b,bnc->nc", w, z)


# ---- building blocks (also used by nlc_residual and the cascade search) --------------------------
def calibrate(z: torch.Tensor, y: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, float]:
    """(temperatures (B,), summed per-backbone NLL): one ``T_b`` per backbone by L-BFGS on
    ``log T_b`` (the log keeps T positive and the problem well conditioned)."""
    log_t = torch.zeros(z.shape[0], device=z.device, requires_grad=True)

    def loss() -> torch.Tensor:
        t = log_t.clamp(-_LOG_T_BOUND, _LOG_T_BOUND).exp()
        return per_backbone_nll(z / t.view(-1, 1, 1), y)

    nll = minimise_lbfgs([log_t], loss, max_iter)
    return log_t.detach().clamp(-_LOG_T_BOUND, _LOG_T_BOUND).exp(), nll


def fit_mix(
    z: torch.Tensor,
    y: torch.Tensor,
    shrinkage: float,
    max_iter: int,
    sample_weight: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """(weights (B,), final loss): ``w = exp(s) * softmax(a)`` minimising weighted CE + shrinkage.

    ``prior`` (B,) log proportions: the mixing logits are pulled toward it (default: uniform, i.e.
    toward the mean of logits). With a prior the fit starts both at the prior and at uniform and
    keeps the lower objective: from a peaked prior alone, L-BFGS first shrinks the overall scale
    (which flattens every gradient of ``a``) and can stay next to a wrong prior however many
    labels say otherwise (tests/test_fusion.py has that case)."""
    b = z.shape[0]
    centre = torch.zeros(b, device=z.device) if prior is None else prior.to(z.device)
    sw = torch.ones(z.shape[1], device=z.device) if sample_weight is None else sample_weight
    starts = [centre] if prior is None else [centre, torch.zeros_like(centre)]
    best: tuple[torch.Tensor, float] | None = None
    for start in starts:
        a = start.clone().requires_grad_(True)
        log_scale = torch.zeros((), device=z.device, requires_grad=True)

        def loss(a=a, log_scale=log_scale) -> torch.Tensor:
            w = torch.softmax(a, 0) * log_scale.clamp(-5.0, 5.0).exp()
            ce = F.cross_entropy(_mixed(w, z), y, reduction="none")
            d = a - centre
            return (ce * sw).sum() + shrinkage * (d - d.mean()).pow(2).sum()

        final = minimise_lbfgs([a, log_scale], loss, max_iter)
        if best is None or final < best[1]:
            with torch.no_grad():
                w = torch.softmax(a, 0) * log_scale.clamp(-5.0, 5.0).exp()
            best = (w.detach(), final)
    assert best is not None
    return best


def fit_single(z: torch.Tensor, y: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Weights (B,): 1/T on the backbone with the best accuracy (ties: lower NLL), 0 elsewhere."""
    acc = (z.argmax(-1) == y).float().mean(-1)
    nll = torch.stack([F.cross_entropy(zb, y) for zb in z])
    best = int(torch.argmax(acc - 1e-6 * nll))
    log_t = torch.zeros((), device=z.device, requires_grad=True)

    def loss() -> torch.Tensor:
        t = log_t.clamp(-_LOG_T_BOUND, _LOG_T_BOUND).exp()
        return F.cross_entropy(z[best] / t, y, reduction="sum")

    minimise_lbfgs([log_t], loss, max_iter)
    w = torch.zeros(z.shape[0], device=z.device)
    w[best] = 1.0 / float(log_t.detach().clamp(-_LOG_T_BOUND, _LOG_T_BOUND).exp())
    return w


def mean_confidence(z: torch.Tensor) -> torch.Tensor:
    """(B,) each backbone's mean top softmax probability over the N images of ``z`` (B, N, C)."""
    return torch.softmax(z, dim=-1).amax(dim=-1).mean(dim=1)


# ---- rules ---------------------------------------------------------------------------------------
def best_single(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
    """The backbone with the best hold-out accuracy; ties go to the lower NLL, which keeps the
    choice meaningful on 1-shot hold-outs where accuracies often tie."""
    acc = (z.argmax(-1) == y).float().mean(dim=1)
    log_p = torch.log_softmax(z, dim=-1)
    target = y.view(1, -1, 1).expand(z.shape[0], -1, 1)
    nll = -log_p.gather(-1, target).squeeze(-1).mean(dim=1)
    chosen = int(torch.where(acc == acc.max(), nll, torch.full_like(nll, math.inf)).argmin())
    w = torch.zeros(z.shape[0], device=z.device)
    w[chosen] = 1.0
    return PoolFit(w, {"chosen": chosen}, {"holdout_accuracy": acc, "holdout_nll": nll})


def calibrated(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
    """Mean of ``z_b / T_b``: ``w_b = 1 / (B T_b)`` with temperatures fitted by NLL."""
    t, nll = calibrate(z, y, p.max_iter)
    return PoolFit(1.0 / (z.shape[0] * t), {"holdout_nll": nll}, {"temperatures": t})


def super_learner(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
    """``w_b = softplus(a_b)`` fitted by cross-entropy from ``w_b = 1/B``, no penalty (the
    overall scale grows on a hold-out every backbone gets right: sharper, same argmax)."""
    b = z.shape[0]
    a = torch.full((b,), math.log(math.expm1(1.0 / b)), device=z.device, requires_grad=True)
    nll = minimise_lbfgs([a], lambda: F.cross_entropy(_mixed(F.softplus(a), z), y), p.max_iter)
    return PoolFit(F.softplus(a.detach()), {"holdout_nll": nll})


def shrunk(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
    """Scale x mixing proportions, the proportions pulled toward ``prior`` (default uniform)."""
    w, loss = fit_mix(z, y, p.shrinkage, p.max_iter, prior=None if prior is None else prior.log())
    return PoolFit(w, {"holdout_loss": loss})


def caruana(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
    """Greedy forward selection with replacement on the hold-out NLL; weights = counts."""
    b = z.shape[0]
    counts = torch.zeros(b, device=z.device)
    total = torch.zeros_like(z[0])
    for _ in range(p.rounds):
        k = counts.sum() + 1
        nll = torch.stack([F.cross_entropy((total + z[i]) / k, y) for i in range(b)])
        best = int(nll.argmin())
        counts[best] += 1
        total = total + z[best]
        holdout_nll = float(nll[best])
    return PoolFit(counts / counts.sum(), {"holdout_nll": holdout_nll}, {"counts": counts})


def self_trained(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
    """The shrunk mix refitted ``p.rounds`` times on labels + the most confident ``p.keep`` share
    of pseudo-labelled ``y == -1`` rows (total weight equal to the labels'); no such row: the
    plain shrunk mix, with a recorded fallback."""
    labelled = y >= 0
    zl, yl, zu = z[:, labelled], y[labelled], z[:, ~labelled]
    meta: dict[str, Any] = {"num_unlabelled": int(zu.shape[1]), "num_pseudo": 0, "fallback": None}
    if meta["num_unlabelled"] == 0:
        meta["fallback"] = "no unlabelled rows (y == -1): fitted the shrunk mix on labels only"
        weights, meta["holdout_loss"] = fit_mix(zl, yl, p.shrinkage, p.max_iter)
        return PoolFit(weights, meta, notes={"fallback": meta["fallback"]})
    weights = torch.full((z.shape[0],), 1.0 / z.shape[0], device=z.device)  # mean of logits
    for _ in range(p.rounds):
        with torch.no_grad():
            conf, pseudo = torch.softmax(_mixed(weights, zu), -1).max(-1)
            chosen = conf >= torch.quantile(conf, 1.0 - p.keep)
        m = int(chosen.sum())
        sw = torch.cat([torch.ones(len(yl), device=z.device),
                        torch.full((m,), len(yl) / m, device=z.device)])  # fmt: skip
        weights, meta["holdout_loss"] = fit_mix(
            torch.cat([zl, zu[:, chosen]], 1), torch.cat([yl, pseudo[chosen]]),
            p.shrinkage, p.max_iter, sw,
        )  # fmt: skip
        meta["num_pseudo"] = m
    return PoolFit(weights, meta)


# ---- wrappers ------------------------------------------------------------------------------------
def with_confidence_prior(rule: Rule) -> Rule:
    """``rule`` on the labelled rows, pulled toward the label-free prior
    ``softmax(mean_confidence / tau)`` (floored at ``1 / max_prior_ratio`` of the top weight)
    estimated on every row given, ``y == -1`` ones included ("Customized Ensembles", ICML 2024)."""

    def fit(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
        conf = mean_confidence(z)
        meta = {"num_prior_images": int(z.shape[1]), "num_unlabelled": int((y < 0).sum())}
        meta["note"] = None
        if meta["num_unlabelled"] == 0 or meta["num_prior_images"] < FEW_IMAGES:
            meta["note"] = (
                f"confidence prior estimated from {meta['num_prior_images']} images, "
                f"{meta['num_unlabelled']} of them unlabelled (give unlabelled images of the "
                "domain, y = -1, for a steadier prior)"
            )
        logit = conf / p.tau
        prior = torch.softmax(logit.clamp_min(logit.max() - math.log(p.max_prior_ratio)), dim=0)
        labelled = y >= 0
        inner = rule(p, z[:, labelled], y[labelled], prior=prior)
        notes = {"prior": [round(float(v), 4) for v in prior]}
        if meta["note"] is not None:
            notes["note"] = meta["note"]
        return PoolFit(
            inner.weights,
            {**inner.meta, **meta},
            {**inner.tensors, "prior": prior, "mean_confidence": conf},
            {**notes, **inner.notes},
        )

    return fit


def _better(new: torch.Tensor, old: torch.Tensor, z_se: float | None) -> bool:
    """Is ``new``'s per-row out-of-fold NLL lower than ``old``'s by more than ``z_se`` standard
    errors of the paired difference (None: lower at all)? The one-standard-error rule of
    model selection: with 10 rows only a large gain switches, with 160 a small one does."""
    diff = old.double() - new.double()
    if z_se is None or diff.numel() < 2:
        return bool(diff.mean() > 0)
    se = float(diff.std()) / math.sqrt(diff.numel())
    return float(diff.mean()) > float(z_se) * se


def with_safety(rule: Rule) -> Rule:
    """``rule``, or the best single backbone (temperature-scaled) when its ``p.folds``-fold CV
    NLL on the hold-out is lower AND it wins at least ``p.required_wins`` folds; both refitted in
    every (stratified) fold. Fewer than ``2 * folds`` labels: the rule, with a recorded fallback.
    Before issue 22 the folds were an unstratified shuffle: the choice can differ on a draw.

    ``p.prior_cv`` (issue 21): with a prior, the same folds also score the rule pulled toward
    uniform instead, and the fusion keeps the prior only where its CV NLL is lower -- a
    confidently wrong backbone (over-sharp under an image shift) cannot hold the prior's weight
    against what the labels say."""

    def cv_nll(p: Any, z: torch.Tensor, y: torch.Tensor, prior) -> dict[str, torch.Tensor]:
        """Per-row out-of-fold NLL of the rule (``"fusion"``; ``"uniform"``: without the prior,
        when ``p.prior_cv``) and of the single backbone, and the fold of every row (the one
        stratified fold rule, ``cross_val_predict``)."""
        candidates = {"fusion": lambda zt, yt: rule(p, zt, yt, prior=prior).weights,
                      "single": lambda zt, yt: fit_single(zt, yt, p.max_iter)}  # fmt: skip
        if prior is not None and getattr(p, "prior_cv", False):
            candidates["uniform"] = lambda zt, yt: rule(p, zt, yt, prior=None).weights
        nll = {}
        for name, fit_weights in candidates.items():

            def fit_predict(k: int, train: torch.Tensor, held: torch.Tensor, fw=fit_weights):
                return _mixed(fw(z[:, train], y[train]), z[:, held])

            oof, folds = cross_val_predict(fit_predict, y, p.folds, p.seed)
            nll[name] = F.cross_entropy(oof, y, reduction="none")
        return {**nll, "folds": folds}

    def fit(p: Any, z: torch.Tensor, y: torch.Tensor, prior=None) -> PoolFit:
        meta: dict[str, Any] = {"fallback": None, "cv_nll_fusion": None, "cv_nll_single": None}
        meta["single_wins"] = 0
        if y.numel() < 2 * p.folds:
            meta["fallback"] = (
                f"{y.numel()} labels are too few for {p.folds}-fold cross-validation: "
                "used the shrunk mix without the safety rule"
            )
            meta["choice"] = "fusion"
        else:
            nll = cv_nll(p, z, y, prior)
            z_se = getattr(p, "se_rule", None)
            if "uniform" in nll:
                keep = not _better(nll["uniform"], nll["fusion"], z_se)
                meta["prior_choice"] = "prior" if keep else "uniform"
                meta["cv_nll_uniform"] = float(nll["uniform"].mean())
                if not keep:
                    nll["fusion"], prior = nll["uniform"], None
            folds = nll["folds"]
            meta["single_wins"] = int(sum(
                float(nll["single"][folds == k].sum()) < float(nll["fusion"][folds == k].sum())
                for k in range(p.folds) if bool((folds == k).any())
            ))  # fmt: skip
            fus, single = float(nll["fusion"].mean()), float(nll["single"].mean())
            meta.update(cv_nll_fusion=fus, cv_nll_single=single)
            if z_se is None:
                wins = meta["single_wins"] >= p.required_wins
                meta["choice"] = "single" if single < fus and wins else "fusion"
            else:
                better = _better(nll["single"], nll["fusion"], z_se)
                meta["choice"] = "single" if better else "fusion"
        notes = {"choice": meta["choice"]}
        if "prior_choice" in meta:
            notes["prior_choice"] = meta["prior_choice"]
        if meta["cv_nll_fusion"] is not None:
            notes.update(cv_nll_fusion=meta["cv_nll_fusion"], cv_nll_single=meta["cv_nll_single"])
        if meta["fallback"] is not None:
            notes["fallback"] = meta["fallback"]
        if meta["choice"] == "single":
            w = fit_single(z, y, p.max_iter)
            loss = float(F.cross_entropy(_mixed(w, z), y, reduction="sum"))
            return PoolFit(w, {**meta, "holdout_loss": loss}, notes=notes)
        inner = rule(p, z, y, prior=prior)
        return PoolFit(inner.weights, {**inner.meta, **meta}, inner.tensors, notes)

    return fit
