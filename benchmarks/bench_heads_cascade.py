"""Fit time of the head-based combiners, the cascade and subset selection at ImageNet scale.

Synthetic, class-structured features at the nine OpenAI CLIP embedding sizes x 1,000 classes
(timings do not depend on the values), k = 1 and 16 shots per class, CPU, torch threads = 2.

Each method's fit is a sequence of components, timed once each and summed per method (the
``lp_*`` variants differ only in the controller fitted after the same heads):
  heads   -- linear probes (k-fold CV of the weight decay + final fit), Tip-Adapter (leave-one-
             out alpha/beta search, plus a LOO-logits pass when cross-fitting), Tip-Adapter-F
             (that search + 20 epochs of key tuning; cross-fitting = 3 fold refits + final);
             "plain" fit for lp_mean/tip_mean/tipf_mean and at 1 shot, "crossfit" otherwise;
  inner   -- best_single / mean_logits / super_learner / nlc on (B, N, C) head logits
             (zero-shot logits of the same shape stand in for head logits);
  cascade -- 9 prefix NLCs (+ 3-fold cross-fitted calibration = 36 NLC fits), and without it;
  subset_nlc -- exhaustive calibrated-mean search over the 511 subsets + one NLC fit.
Heads are independent per backbone: a component over ``--max-component-s`` is stopped after
the backbones done so far and extrapolated by feature dims (cost ~ D), and Tip-Adapter-F from
one epoch on one backbone when even that is too long; such rows are marked "~".

    python benchmarks/bench_heads_cascade.py                 # 1 and 16 shots (long on 2 cores)
    python benchmarks/bench_heads_cascade.py --shots 1 --classes 100
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from clipfuse.cascade import Cascade, SubsetNLC
from clipfuse.combiners import make_combiner
from clipfuse.heads import HEAD_KINDS

# RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336
OPENAI_DIMS = (1024, 512, 640, 768, 1024, 512, 512, 768, 768)
# Approximate image-tower GFLOPs (2 per multiply-add); only their order matters for timing.
OPENAI_GFLOPS = (10.8, 19.6, 30.9, 105.2, 362.8, 8.8, 35.2, 162.0, 381.8)
FOLDS = 3


def world(classes: int, shots: int, seed: int = 0):
    """Features (B x (N, D)), zero-shot logits (B, N, C), labels: class centres + noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(shots)
    feats, logits = [], []
    for d in OPENAI_DIMS:
        centres = F.normalize(torch.randn(classes, d, generator=gen), dim=1)
        text = F.normalize(centres + 1.5 * torch.randn(classes, d, generator=gen) / d**0.5, dim=1)
        f = F.normalize(centres[y] + 1.2 * torch.randn(len(y), d, generator=gen) / d**0.5, dim=1)
        feats.append(f)
        logits.append(100 * f @ text.T)
    return feats, torch.stack(logits), y


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fit_seconds(combiner, data) -> float:
    """Wall time of ``combiner.fit(features, logits, y)``."""
    start = time.perf_counter()
    combiner.fit(*data)
    return time.perf_counter() - start


def time_heads(kind: str, crossfit: bool, data, classes: int, budget: float) -> tuple[float, str]:
    """Head-bank fit time over all backbones, measured backbone by backbone (see the doc)."""
    feats, z, y = data

    def one(b: int, params: dict | None = None) -> float:
        bank = HEAD_KINDS[kind](params)
        if crossfit:
            return seconds(lambda: bank.fit_crossfit([feats[b]], z[[b]], y, classes, FOLDS, 0))
        return seconds(lambda: bank.fit([feats[b]], z[[b]], y, classes, 0))

    if kind == "tipf":  # probe on backbone 0: 0 and 1 epoch -> cost of the default epochs
        t0, t1 = one(0, {"epochs": 0}), one(0, {"epochs": 1})
        epochs = HEAD_KINDS["tipf"].DEFAULTS["epochs"]
        estimate = (t0 + epochs * (t1 - t0)) * sum(OPENAI_DIMS) / OPENAI_DIMS[0]
        if estimate > budget:
            return estimate, f"~ from backbone 0: {t0:.1f} s + {epochs} x {t1 - t0:.1f} s/epoch"
    total, dims = 0.0, 0
    for b, d in enumerate(OPENAI_DIMS):
        total += one(b)
        dims += d
        if total > budget and b < len(OPENAI_DIMS) - 1:
            return total * sum(OPENAI_DIMS) / dims, f"~ from {b + 1}/{len(OPENAI_DIMS)} backbones"
    return total, "measured"


def run_shots(shots: int, classes: int, budget: float) -> None:
    """Time every component at ``shots`` per class and print the per-method sums."""
    data = world(classes, shots)
    can_crossfit = shots >= 2
    print(f"\n== {shots} shot(s): {data[2].numel()} hold-out rows ==")
    heads: dict[tuple[str, bool], tuple[float, str]] = {}
    for kind in ("linear", "tip", "tipf"):
        for crossfit in sorted({False, can_crossfit}):
            if kind == "linear" and crossfit:  # the weight-decay CV already gives OOF logits
                heads[kind, crossfit] = heads[kind, False]
                continue
            heads[kind, crossfit] = t, note = time_heads(kind, crossfit, data, classes, budget)
            mode = "crossfit" if crossfit else "plain"
            print(f"  heads {kind:<6} {mode:<8} {t:9.1f} s  {note}", flush=True)
    inner = {}
    for name in ("best_single", "mean_logits", "super_learner", "nlc"):
        inner[name] = fit_seconds(make_combiner(name), data)
        print(f"  inner {name:<14} {inner[name]:9.1f} s", flush=True)
    rows = []
    for kind, prefix in (("linear", "lp"), ("tip", "tip"), ("tipf", "tipf")):
        for suffix, name in (("", "best_single"), ("_mean", "mean_logits"),
                             ("_super_learner", "super_learner"), ("_nlc", "nlc")):  # fmt: skip
            t, note = heads[kind, can_crossfit and name != "mean_logits"]
            rows.append((prefix + suffix, t + inner[name], note))
    gflops = list(OPENAI_GFLOPS)
    in_sample = fit_seconds(Cascade(gflops=gflops, calibration_folds=0), data)
    rows.append(("cascade (in-sample calibration)", in_sample, "measured"))
    if can_crossfit:  # + 3 fold refits per stage; an NLC fit costs fixed steps, not rows
        if 4 * in_sample > budget:
            rows.append(("cascade (default: 3-fold)", 4 * in_sample, "~ 4 x in-sample"))
        else:
            t = fit_seconds(Cascade(gflops=gflops), data)
            rows.append(("cascade (default: 3-fold)", t, "measured"))
    sub = SubsetNLC(gflops=gflops, budget_gflops=80.0)
    t = fit_seconds(sub, data)
    rows.append(("subset_nlc (budget 80 GFLOPs)", t, f"measured; chose backbones {sub.subset_}"))
    print(f"  {'method':<32} {'fit s':>9}")
    for label, t, note in rows:
        print(f"  {label:<32} {t:9.1f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="1,16")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-component-s", type=float, default=300.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"setup: {len(OPENAI_DIMS)} backbones ({sum(OPENAI_DIMS)} dims), {args.classes} classes, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")  # fmt: skip
    for shots in [int(s) for s in args.shots.split(",")]:
        run_shots(shots, args.classes, args.max_component_s)
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
