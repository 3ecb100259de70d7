"""Seeded, stratified row splits of a labelled hold-out: cross-fitting folds and a 90/10 split.

Heads and controllers learn from the same few labels. Whatever a controller trains on must be
head outputs for rows the head did not fit (cross-fitting, as scikit-learn's
``StackingClassifier`` does with ``cross_val_predict``), or the controller learns from
in-sample, over-confident head logits that no test input will ever produce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from clipfuse.errors import FitError


def class_counts(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) number of rows per class."""
    return torch.bincount(y.cpu(), minlength=num_classes)


def can_crossfit(y: torch.Tensor, num_classes: int) -> bool:
    """Cross-fitting needs >= 2 rows in every class: then every training fold sees every class."""
    return bool(class_counts(y, num_classes).min() >= 2)


def stratified_folds(y: torch.Tensor, num_folds: int, seed: int) -> torch.Tensor:
    """(N,) fold id in ``[0, num_folds)``: each class's rows shuffled and dealt round-robin.

    A class with ``n_c >= 2`` rows lands in at least two folds, so the complement of any fold
    (a training fold) holds at least one row of it. Each class starts dealing at a random fold so
    that small classes do not all pile into fold 0. The global torch RNG is left untouched.
    """
    if num_folds < 2:
        raise FitError(f"cross-fitting needs >= 2 folds; got {num_folds}")
    y_cpu = y.cpu()
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty_like(y_cpu)
    for c in torch.unique(y_cpu).tolist():
        rows = torch.nonzero(y_cpu == c).flatten()
        rows = rows[torch.randperm(rows.numel(), generator=gen)]
        start = int(torch.randint(num_folds, (1,), generator=gen))
        fold[rows] = (torch.arange(rows.numel()) + start) % num_folds
    return fold.to(y.device)


def cross_val_predict(
    fit_predict: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    num_folds: int,
    seed: int,
    dim: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out-of-fold outputs, fold ids): ``fit_predict(k, train_mask, held_mask)`` fits on the rows of
    ``train_mask`` and returns outputs for the rows of ``held_mask`` along ``dim``; every row's
    output comes from the one fit that did not see it (scikit-learn's ``cross_val_predict``).
    The one fold rule of clipfuse: ``stratified_folds``."""
    folds = stratified_folds(y, num_folds, seed)
    out: torch.Tensor | None = None
    for k in range(num_folds):
        held = folds == k
        if not bool(held.any()):
            continue
        part = fit_predict(k, ~held, held)
        if out is None:
            shape = list(part.shape)
            shape[dim] = y.numel()
            out = torch.empty(shape, dtype=part.dtype, device=part.device)
        out.index_copy_(dim, torch.nonzero(held).flatten().to(part.device), part)
    assert out is not None
    return out, folds


def crossfit_proba(
    make: Callable[[], Any],
    features: list[torch.Tensor],
    z: torch.Tensor,
    y: torch.Tensor,
    num_folds: int,
    seed: int,
) -> torch.Tensor:
    """(N, C) probabilities, row i from a fresh combiner ``make()`` fitted on the folds without
    row i: honest hold-out scores for anything that learns (needs ``can_crossfit``)."""

    def fit_predict(k: int, train: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
        model = make().fit([f[train] for f in features], z[:, train], y[train])
        return model.predict_proba([f[held] for f in features], z[:, held])

    return cross_val_predict(fit_predict, y, num_folds, seed)[0]


def stratified_split(y: torch.Tensor, fraction: float, seed: int, num_classes: int) -> torch.Tensor:
    """(N,) bool mask of the ``fraction`` part (the controller's rows in the paper's 90/10 split).

    Per class ``round(fraction * n_c)`` rows, clipped to ``[1, n_c - 1]`` so both parts see every
    class; a class with a single row cannot be split and is a FitError.
    """
    if not 0 < fraction < 1:
        raise FitError(f"controller_fraction must be in (0, 1); got {fraction}")
    counts = class_counts(y, num_classes)
    if int(counts.min()) < 2:
        short = torch.nonzero(counts < 2).flatten().tolist()
        raise FitError(
            f"the heads/controller split needs >= 2 labelled rows per class; {len(short)} of "
            f"{num_classes} classes have fewer (e.g. class {short[0]}); use protocol='crossfit'"
        )
    y_cpu = y.cpu()
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(y_cpu.numel(), dtype=torch.bool)
    for c in range(num_classes):
        rows = torch.nonzero(y_cpu == c).flatten()
        take = min(max(1, round(fraction * rows.numel())), rows.numel() - 1)
        mask[rows[torch.randperm(rows.numel(), generator=gen)[:take]]] = True
    return mask.to(y.device)
