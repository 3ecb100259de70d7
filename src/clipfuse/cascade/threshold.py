"""Exit rule of a cascade and the calibration of its confidence threshold.

Stage p (the first p+1 backbones, cheapest first) gives each input a confidence: the maximum
softmax probability of the controller fitted on that prefix. An input exits at the first
stage whose confidence is >= the threshold t (the last stage always answers). So t <= 0 runs
only the cheapest backbone and any t > 1 runs them all; ``ALL_STAGES`` is such a t.

Raising t can only move an input's exit later, so the mean cost is non-decreasing in t: the
largest t within a compute target is found by bisection over the distinct confidences, where
every possible behaviour occurs. Accuracy is not monotone in t, so an accuracy target is met
by scanning up to ``MAX_CANDIDATES`` thresholds (quantiles of the confidences) for the
cheapest one that reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipfuse.errors import FitError

ALL_STAGES = 2.0  # any threshold > 1: no early exit
MAX_CANDIDATES = 512


@dataclass(frozen=True)
class Operating:
    """What a threshold does on a labelled set: mean cost, accuracy, mean stages run."""

    threshold: float
    mean_cost: float
    accuracy: float
    mean_backbones: float


def exit_stage(conf: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Exit stage per input; ``conf`` is (P, N), a tensor of thresholds (T,) gives (T, N)."""
    t = torch.as_tensor(threshold, dtype=conf.dtype, device=conf.device)
    passed = conf.unsqueeze(0) >= t.reshape(-1, 1, 1)  # (T, P, N)
    passed[:, -1] = True
    stage = passed.to(torch.uint8).argmax(dim=1)  # first True
    return stage if t.dim() else stage[0]


def operating_points(
    conf: torch.Tensor, correct: torch.Tensor, costs: torch.Tensor, thresholds: torch.Tensor
) -> list[Operating]:
    """Evaluate many thresholds on a labelled set (``correct`` (P, N) bool, ``costs`` (P,))."""
    out: list[Operating] = []
    costs = costs.to(conf.device, torch.float64)
    step = max(1, (1 << 24) // max(1, conf.numel()))
    for start in range(0, thresholds.numel(), step):
        ts = thresholds[start : start + step]
        stage = exit_stage(conf, ts)  # (T, N)
        right = correct.gather(0, stage)  # (T, N): correct at each input's exit stage
        for i, t in enumerate(ts.tolist()):
            out.append(
                Operating(
                    threshold=float(t),
                    mean_cost=float(costs[stage[i]].mean()),
                    accuracy=float(right[i].float().mean()),
                    mean_backbones=float(stage[i].float().mean() + 1),
                )
            )
    return out


def _candidates(conf: torch.Tensor, limit: int | None) -> torch.Tensor:
    values = torch.unique(conf.flatten().float())
    if limit is not None and values.numel() > limit:
        idx = torch.linspace(0, values.numel() - 1, limit, device=values.device).round().long()
        values = values[idx]
    extra = torch.tensor([0.0, ALL_STAGES], device=values.device)
    return torch.unique(torch.cat([values, extra]))  # sorted ascending


def threshold_for_cost(conf: torch.Tensor, costs: torch.Tensor, target: float) -> float:
    """Largest threshold whose mean cost on these inputs is <= ``target``."""
    costs = costs.to(conf.device, torch.float64)
    if float(costs[0]) > target:
        raise FitError(
            f"target compute {target:g} is below the cheapest backbone's cost {float(costs[0]):g}"
        )
    cand = _candidates(conf, None)

    def mean_cost(i: int) -> float:
        return float(costs[exit_stage(conf, float(cand[i]))].mean())

    lo, hi = 0, cand.numel() - 1  # invariant: mean_cost(lo) <= target
    if mean_cost(hi) <= target:
        return float(cand[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mean_cost(mid) <= target:
            lo = mid
        else:
            hi = mid
    return float(cand[lo])


def threshold_for_accuracy(
    conf: torch.Tensor, correct: torch.Tensor, costs: torch.Tensor, target: float
) -> tuple[float, bool]:
    """(cheapest threshold reaching accuracy ``target``, met?); all stages when none does."""
    points = operating_points(conf, correct, costs, _candidates(conf, MAX_CANDIDATES))
    reached = [p for p in points if p.accuracy >= target - 1e-12]
    if not reached:
        return ALL_STAGES, False
    best = min(reached, key=lambda p: (p.mean_cost, -p.accuracy, -p.threshold))
    return best.threshold, True
