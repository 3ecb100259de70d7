"""Tip-Adapter and Tip-Adapter-F heads (Zhang et al., ECCV 2022), one per backbone.

Tip-Adapter is training-free: the labelled rows become a key-value cache (keys = L2-normalised
features F, values = one-hot labels L), and for a query feature f

    logits(f) = zero_shot(f) + alpha * exp(-beta * (1 - f F^T)) @ L.

alpha = 0 gives back the zero-shot logits exactly; beta = 0 adds alpha * (rows per class),
a constant on a balanced hold-out. Tip-Adapter-F fine-tunes the keys F (AdamW, lr 1e-3,
eps 1e-4, cosine schedule, batch 256, 20 epochs: the public code's defaults).

Hyper-parameters, never on test (Tip-Adapter-F's public code picks its best epoch on the test
set; docs/method.md §6.6 forbids that):
- alpha, beta: grid search by leave-one-out accuracy (ties: LOO NLL) within the labelled rows
  when every class has >= 2 of them -- exact and cheap for a cache model: the query's own cache
  entry is masked. With 1 row in some class, LOO would remove that class from the cache, so the
  paper's documented defaults alpha = 1, beta = 5.5 are used instead.
- Tip-Adapter-F: a fixed number of epochs (no early stopping, no epoch selection), alpha and
  beta from the search above on the un-tuned cache, kept fixed during and after fine-tuning.
  The public code trains on augmented images; cached features have no augmentations, so each
  training query is one of the keys, and its own entry is masked (otherwise the trivial
  self-match exp(0) = 1 would be all the keys learn).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners.folds import can_crossfit
from clipfuse.errors import FitError
from clipfuse.heads.base import HeadBank

DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 5.5
CHUNK_ELEMENTS = 1 << 22  # affinity entries per query chunk (16 MB of float32)


def _chunk_rows(num_keys: int, width: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(num_keys, width, 1))


def class_sums(affinity: torch.Tensor, key_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(n, C) = affinity (n, M) @ one_hot(key_labels), without building the one-hot matrix."""
    out = torch.zeros(affinity.shape[0], num_classes, dtype=affinity.dtype, device=affinity.device)
    return out.index_add(1, key_labels, affinity)


def cache_logits(
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_labels: torch.Tensor,
    num_classes: int,
    beta: float,
    leave_one_out: bool = False,
) -> torch.Tensor:
    """(n, C) cache scores ``exp(-beta (1 - q K^T)) @ L``, computed in query chunks;
    ``leave_one_out`` (queries are the keys): each query's own entry is masked."""
    step = _chunk_rows(keys.shape[0], num_classes)
    parts = []
    for start in range(0, queries.shape[0], step):
        aff = torch.exp(-beta * (1.0 - queries[start : start + step] @ keys.T))
        if leave_one_out:
            rows = torch.arange(aff.shape[0], device=aff.device)
            aff[rows, rows + start] = 0.0
        parts.append(class_sums(aff, key_labels, num_classes))
    if not parts:
        return torch.zeros(0, num_classes, device=queries.device)
    return torch.cat(parts)


def loo_search(
    x: torch.Tensor,
    z: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    alphas: list[float],
    betas: list[float],
) -> tuple[float, float, float, float]:
    """(alpha, beta, LOO accuracy, LOO NLL) maximising leave-one-out accuracy over the grid.

    Row i is scored with the cache built from every other row (its own entry masked), so
    no row votes for itself. The similarity chunk is computed once per chunk for all betas.
    """
    a = torch.tensor(alphas, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    correct = torch.zeros(len(alphas), len(betas), device=x.device)
    nll = torch.zeros(len(alphas), len(betas), device=x.device)
    n = x.shape[0]
    step = _chunk_rows(n, num_classes * len(alphas))
    for start in range(0, n, step):
        rows = torch.arange(start, min(n, start + step), device=x.device)
        sim = x[rows] @ x.T
        own = torch.arange(rows.numel(), device=x.device)
        for j, beta in enumerate(betas):
            aff = torch.exp(-beta * (1.0 - sim))
            aff[own, rows] = 0.0
            scores = z[rows].unsqueeze(0) + a * class_sums(aff, y, num_classes).unsqueeze(0)
            target = y[rows]
            correct[:, j] += (scores.argmax(-1) == target).sum(-1)
            log_p = torch.log_softmax(scores, dim=-1)
            nll[:, j] -= log_p.gather(-1, target.view(1, -1, 1).expand(len(alphas), -1, 1)).sum(
                (1, 2)
            )
    acc, nll = correct / n, nll / n
    # highest accuracy, then lowest NLL (first in grid order on exact ties)
    best = torch.where(acc == acc.max(), nll, torch.full_like(nll, math.inf))
    flat = int(torch.argmin(best))
    i, j = divmod(flat, len(betas))
    return float(alphas[i]), float(betas[j]), float(acc[i, j]), float(nll[i, j])


class TipAdapterHeads(HeadBank):
    """Training-free cache per backbone; tensors ``keys`` (M, D), ``labels`` (M,)."""

    kind = "tip"
    DEFAULTS = {
        "alpha": DEFAULT_ALPHA,
        "beta": DEFAULT_BETA,
        "search": True,
        "alphas": [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0],
        "betas": [1.0, 2.0, 3.5, 5.5, 7.0, 10.0],
    }

    def _validate(self) -> None:
        super()._validate()
        p = self.params
        if not p["alphas"] or not p["betas"] or min(p["alphas"]) < 0 or min(p["betas"]) < 0:
            raise FitError(f"{self.kind} heads: alphas and betas must be non-empty and >= 0")

    def _choose(
        self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor, c: int
    ) -> tuple[float, float, dict[str, Any]]:
        p = self.params
        if p["search"] and can_crossfit(y, c):
            alpha, beta, acc, nll = loo_search(x, z, y, c, p["alphas"], p["betas"])
            return alpha, beta, {"selection": "leave-one-out grid search", "loo_accuracy": acc,
                                 "loo_nll": nll}  # fmt: skip
        why = "search disabled" if not p["search"] else "a class has < 2 labelled rows"
        return float(p["alpha"]), float(p["beta"]), {"selection": f"fixed default ({why})"}

    def _fit_one(
        self, features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, c: int, seed: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        alpha, beta, meta = self._choose(features, logits, y, c)
        tensors = {"keys": features.detach().clone(), "labels": y.detach().clone()}
        return tensors, {"alpha": alpha, "beta": beta, "num_classes": c, **meta}

    def _logits_one(self, b: int, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        head, meta = self.fitted_[b], self.meta_[b]
        if meta["alpha"] == 0:
            return logits.clone()
        cache = cache_logits(features, head["keys"], head["labels"], meta["num_classes"],
                             meta["beta"])  # fmt: skip
        return logits + meta["alpha"] * cache

    def fit_crossfit(
        self,
        features: list[torch.Tensor],
        logits: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        num_folds: int,
        seed: int,
    ) -> torch.Tensor:
        """Leave-one-out cache logits (the limit of K-fold for a cache; ``num_folds`` unused).

        alpha and beta were chosen on these same LOO scores: two numbers per backbone, a
        small optimism the controller inherits (documented).
        """
        self.fit(features, logits, y, num_classes, seed)
        return torch.stack([
            logits[b].float() + m["alpha"] * cache_logits(x, x, y, num_classes, m["beta"], True)
            for b, (x, m) in enumerate(zip(features, self.meta_))
        ])  # fmt: skip


class TipAdapterFHeads(TipAdapterHeads):
    """Tip-Adapter with fine-tuned cache keys (the ``keys`` tensor holds the tuned keys)."""

    kind = "tipf"
    DEFAULTS = {
        **TipAdapterHeads.DEFAULTS,
        "epochs": 20,
        "lr": 1e-3,
        "batch_size": 256,
        "weight_decay": 0.01,
    }

    def _fit_one(
        self, features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, c: int, seed: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super()._fit_one(features, logits, y, c, seed)
        tensors["keys"], meta["final_train_loss"] = self._finetune(
            features, logits, y, c, meta["alpha"], meta["beta"], seed
        )
        meta["epochs"] = int(self.params["epochs"])
        return tensors, meta

    def _finetune(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        y: torch.Tensor,
        c: int,
        alpha: float,
        beta: float,
        seed: int,
    ) -> tuple[torch.Tensor, float]:
        """Keys after ``epochs`` of AdamW on CE(zero-shot + alpha * cache), own entry masked."""
        p = self.params
        n, batch = x.shape[0], int(p["batch_size"])
        keys = x.detach().clone().requires_grad_(True)
        per_epoch = math.ceil(n / batch)
        total = max(1, int(p["epochs"]) * per_epoch)
        opt = torch.optim.AdamW([keys], lr=p["lr"], eps=1e-4, weight_decay=p["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
        gen = torch.Generator().manual_seed(seed)
        last = float("nan")
        with torch.enable_grad():
            for _ in range(int(p["epochs"])):
                order = torch.randperm(n, generator=gen).to(x.device)
                for start in range(0, n, batch):  # the short last batch is kept
                    idx = order[start : start + batch]
                    aff = torch.exp(-beta * (1.0 - x[idx] @ keys.T))
                    own = torch.zeros_like(aff, dtype=torch.bool)
                    own[torch.arange(idx.numel(), device=x.device), idx] = True
                    scores = z[idx] + alpha * class_sums(aff.masked_fill(own, 0.0), y, c)
                    loss = F.cross_entropy(scores, y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    last = float(loss.detach())
        return keys.detach(), last

    # K-fold refits: tuned keys have seen every training row, so LOO is not honest here.
    fit_crossfit = HeadBank.fit_crossfit
