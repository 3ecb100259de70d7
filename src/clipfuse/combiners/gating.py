"""Input-conditioned combiners: an MLP reads all backbones' features and weights their logits.

The controller family: ``ControllerCombiner`` and its presets, the mixture-of-experts gate
(``moe``, here), NLC (``nlc``), ``nlc_residual`` and ``nlc_learn``.

NLC and the mixture-of-experts gate differ only in how the MLP's B outputs become per-backbone
weights (``1/t`` with positive temperatures vs a softmax); everything else -- input assembly,
network, fixed training budget, saved state -- lives here once.

Training budget (docs/method.md §3 leaves it open; 1-shot has no validation set): a FIXED number of
Adam steps (default 1,000) on minibatches of ``batch_size`` hold-out examples (default 256; the
whole hold-out when smaller), no early stopping -- stopping rules need held-out labels that a
1-shot hold-out does not have, and choosing an epoch on test is the flaw docs/method.md §6.6 forbids.
Steps rather than epochs, so the work and the distance travelled from the plain-sum start do not
swing with the hold-out size (1 shot x 10 classes = 10 examples vs 10% of ImageNet = 128k).
Why 1,000: at lr 2e-4 the synthetic test bed (tests/synthetic.py) gains clearly from 300 to
1,000 steps and is flat from 1,000 to 3,000 (no late overfitting at 1-4 shots), and 1,000 steps
of 256 examples fit 1,000 classes x 9 backbones (6,528 feature dims) in about 10-15 s on 2 CPU
cores (benchmarks/bench_combiners.py). Weight decay 0.01 in Adam's L2 form (docs/method.md says
"Adam") is the default regulariser.

Prediction dropout (``backbone_dropout``, arXiv 2410.04520 "post-hoc neural ensemblers"): during
training each backbone is dropped for each example with that probability (weight 0 in the fused
logits) and the kept weights are divided by ``1 - p``, so the expected fused scale is unchanged;
it stops the controller leaning on one backbone. 0 (default) = off, the paper's NLC as described.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.registry import register_combiner
from clipfuse.errors import FitError


def controller_input(features: list[torch.Tensor], normalize: bool) -> torch.Tensor:
    """u(x) = [h_1(x); ...; h_B(x)], each block optionally L2-normalised first."""
    blocks = [F.normalize(f, dim=-1) for f in features] if normalize else features
    return torch.cat(blocks, dim=-1)


def minibatches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor | None]:
    """Example indices for each of ``steps`` steps; ``None`` = the whole set (it fits one batch).

    Otherwise seeded shuffled epochs; a short last batch is kept (no drop_last, which silently
    skipped training on tiny few-shot sets in CoOp-style code).
    """
    if batch_size >= n:
        yield from (None for _ in range(steps))
        return
    gen = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos >= n:
            order, pos = torch.randperm(n, generator=gen), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


class ControllerCombiner(Combiner):
    """Base for ``fused = sum_b w_b(x) z_b(x)`` with ``w(x) = weights(MLP(u(x)))``.

    Subclasses define ``_neutral_bias`` (the output bias that makes the starting weights
    neutral) and ``_mix_weights`` (raw MLP outputs -> per-backbone weights). The last layer's
    weight matrix starts at zero, so at step 0 every input gets exactly the neutral weights.
    Seeded and deterministic: the init and the minibatch order come from ``seed`` alone and
    the global torch RNG is left untouched.
    Fitted: ``mlp_`` (the network), ``train_loss_`` (mean loss over the last 10% of steps).
    """

    uses_features = True
    min_per_class = 1

    def __init__(
        self,
        *,
        hidden: int = 128,
        steps: int = 1000,
        batch_size: int = 256,
        lr: float = 2e-4,
        weight_decay: float = 0.01,
        normalize_inputs: bool = True,
        backbone_dropout: float = 0.0,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(device=device)
        self.backbone_dropout = backbone_dropout
        self.hidden = hidden
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize_inputs = normalize_inputs
        self.seed = seed

    # ---- subclass hooks ------------------------------------------------------------------
    def _neutral_bias(self) -> float:
        raise NotImplementedError

    def _mix_weights(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _start(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Fit whatever the controller starts from (before the MLP); nothing by default."""

    def _penalty(self, raw: torch.Tensor) -> torch.Tensor | float:
        """Extra training loss on the raw MLP outputs; none by default (weight decay only)."""
        return 0.0

    def _norm_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, C) logits as the controller fuses them; unchanged by default."""
        return z

    def _dropout_mask(self, shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
        """(n, B) keep-mask / (1 - p): drops whole backbones per example, expected scale 1."""
        p = float(self.backbone_dropout)
        keep = torch.rand(shape, generator=gen) >= p
        return keep.to(self.device, torch.float32) / (1.0 - p)

    # ---- network -------------------------------------------------------------------------
    def _build_mlp(self, in_dim: int, num_backbones: int) -> nn.Sequential:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            mlp = nn.Sequential(
                nn.Linear(in_dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, num_backbones)
            )
        with torch.no_grad():
            mlp[2].weight.zero_()
            mlp[2].bias.fill_(self._neutral_bias())
        return mlp.to(self.device)

    def _weights(self, features: list[torch.Tensor]) -> torch.Tensor:
        """(N, B) per-input backbone weights."""
        return self._mix_weights(self.mlp_(controller_input(features, self.normalize_inputs)))

    @staticmethod
    def _fuse(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nb,bnc->nc", w, z)

    # ---- fit / predict -------------------------------------------------------------------
    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        assert features is not None
        self._start(z, y)
        z = self._norm_logits(z)
        u = controller_input(features, self.normalize_inputs)
        n = u.shape[0]
        drop_gen = torch.Generator().manual_seed(self.seed + 1)
        self.mlp_ = self._build_mlp(u.shape[1], z.shape[0])
        opt = torch.optim.Adam(self.mlp_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        tail = max(1, int(self.steps) // 10)
        losses = []
        self.mlp_.train()
        for idx in minibatches(n, int(self.batch_size), int(self.steps), self.seed):
            if idx is None:
                u_b, z_b, y_b = u, z, y
            else:
                idx = idx.to(z.device)
                u_b, z_b, y_b = u[idx], z[:, idx], y[idx]
            raw = self.mlp_(u_b)
            w = self._mix_weights(raw)
            if self.backbone_dropout > 0:
                w = w * self._dropout_mask(tuple(w.shape), drop_gen)
            loss = F.cross_entropy(self._fuse(w, z_b), y_b) + self._penalty(raw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        self.mlp_.eval()
        self.mlp_.requires_grad_(False)
        self.train_loss_ = float(torch.stack(losses[-tail:]).mean())

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        assert features is not None
        return self._fuse(self._weights(features), self._norm_logits(z))

    def _checked_features(self, features: list[Any]) -> list[torch.Tensor]:
        """Features alone (no logits), checked against the fitted dims and moved to device."""
        self._check_fitted()
        if features is None or len(features) == 0:
            raise FitError(
                f"{self.name} needs features=[...] for its {self.num_backbones_} backbones"
            )
        n = int(features[0].shape[0])
        out = self._prepare_features(features, self.num_backbones_, n)
        assert out is not None
        return out

    # ---- saved state ---------------------------------------------------------------------
    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {f"mlp.{k}": v for k, v in self.mlp_.state_dict().items()}
        return {"train_loss": self.train_loss_}, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        assert self.feature_dims_ is not None
        self.mlp_ = self._build_mlp(sum(self.feature_dims_), self.num_backbones_)
        self.mlp_.load_state_dict({k[len("mlp.") :]: v for k, v in tensors.items()})
        self.mlp_.eval()
        self.mlp_.requires_grad_(False)
        self.train_loss_ = float(meta["train_loss"])


@register_combiner(groups=("core", "controllers"))
class MixtureOfExperts(ControllerCombiner):
    """``fused(x) = sum_b g_b(x) z_b(x)`` with ``g(x) = softmax(MLP([h_1(x); ...; h_B(x)]))``.

    Same network, optimiser and fixed budget as NLC (so the comparison isolates the weighting
    rule): the gate starts uniform (zero last layer), i.e. from mean logits. Unlike NLC's
    temperatures the gates sum to 1, so the gate can redistribute trust between backbones but
    not sharpen or soften the fused logits overall.
    """

    name = "moe"

    def _neutral_bias(self) -> float:
        return 0.0

    def _mix_weights(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.softmax(raw, dim=-1)

    def predict_gates(self, features: list) -> torch.Tensor:
        """(N, B) gate values, rows sum to 1."""
        feats = self._checked_features(features)
        with torch.no_grad():
            return self._weights(feats)
