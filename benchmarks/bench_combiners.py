"""Benchmark the combiners at ImageNet scale on synthetic data.

(a) Fit every combiner at 1 shot on 1,000 classes x 9 backbones with the OpenAI CLIP embedding
    sizes (6,528 feature dims in all). Target: NLC fit < 30 s on 2 CPU cores.
(b) Evaluate every method on 50,000 test samples x 9 backbones x 1,000 classes. The float32
    logits alone would be 1.8 GB (1.68 GiB), so test chunks are generated and scored one at a time
    (``score_chunks`` below). Target: peak RSS < 4 GB.

    python benchmarks/bench_combiners.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_combiners.py --quick    # 100 classes, 5,000 test samples
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import SyntheticWorld  # noqa: E402

from clipfuse.combiners import make_combiner, oracle_correct  # noqa: E402
from clipfuse.evaluation.runner import CORE_METHODS  # noqa: E402

# Projected image-embedding sizes of RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16,
# ViT-L/14, ViT-L/14@336 (open_clip, pretrained="openai").
OPENAI_DIMS = (1024, 512, 640, 768, 1024, 512, 512, 768, 768)
# The fusion methods of METHOD.md §4 (the registry also holds per-backbone-head and cascade
# variants, which need other inputs).
METHODS = tuple(CORE_METHODS)


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 classes, 5,000 test samples")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--chunk", type=int, default=2000, help="test samples per chunk")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classes, n_test = (100, 5_000) if args.quick else (1_000, 50_000)
    # Wider margins than the unit-test world: with 1,000 classes the 0.02 noise alone would
    # bury a 0.05 margin; the timings do not depend on these values.
    world = SyntheticWorld(
        num_backbones=len(OPENAI_DIMS),
        num_classes=classes,
        feature_dims=OPENAI_DIMS,
        competent_margin=0.10,
        distractor_margin=0.12,
        seed=0,
    )
    print(
        f"setup: {len(OPENAI_DIMS)} backbones, {sum(OPENAI_DIMS)} feature dims, {classes} classes, "
        f"device={args.device}, torch threads={torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} (the CPU may be shared)"
    )
    print(f"peak RSS after imports: {peak_rss_gib():.2f} GiB (torch itself)")

    train = world.sample(1, seed=0)
    print(f"\n(a) fit at 1 shot ({train.y.numel()} hold-out examples)")
    fitted = {}
    for name in METHODS:
        start = time.perf_counter()
        fitted[name] = make_combiner(name, device=args.device).fit(
            train.features, train.logits, train.y
        )
        print(f"  {name:<16} fit {time.perf_counter() - start:7.2f} s")
    print(f"  peak RSS after fitting: {peak_rss_gib():.2f} GiB")

    print(f"\n(b) evaluate on {n_test} test samples in chunks of {args.chunk}")
    n_chunks = -(-n_test // args.chunk)
    sizes = [min(args.chunk, n_test - i * args.chunk) for i in range(n_chunks)]

    def chunks():
        for i, size in enumerate(sizes):
            split = world.sample(n=size, seed=1 + i)
            yield split.features, split.logits, split.y

    start = time.perf_counter()
    scores = score_chunks(fitted, chunks())
    total = time.perf_counter() - start
    print(f"  {'method':<16} {'acc %':>7} {'NLL':>8} {'predict s':>10}")
    for name, (correct, nll_sum, seconds) in scores.items():
        print(f"  {name:<16} {100 * correct / n_test:7.2f} {nll_sum / n_test:8.3f} {seconds:10.2f}")
    print(f"  total (incl. generating the synthetic chunks): {total:.1f} s")
    full_gib = len(OPENAI_DIMS) * n_test * classes * 4 / 1024**3
    print(
        f"  peak RSS: {peak_rss_gib():.2f} GiB (the full float32 logits would be {full_gib:.2f} GiB)"
    )


def score_chunks(fitted, chunks) -> dict[str, list[float]]:
    """{method: [correct, summed NLL, predict seconds]} over chunks of (features, logits, y),
    plus the oracle (NLL NaN): rows are independent, so no chunk needs the others."""
    scores = {name: [0, 0.0, 0.0] for name in [*fitted, "oracle"]}
    scores["oracle"][1] = float("nan")
    for features, logits, y in chunks:
        for name, combiner in fitted.items():
            start = time.perf_counter()
            fused = combiner.predict_logits(features, logits).float().cpu()
            scores[name][2] += time.perf_counter() - start
            scores[name][0] += int((fused.argmax(-1) == y).sum())
            scores[name][1] -= float(torch.log_softmax(fused, -1).gather(1, y.view(-1, 1)).sum())
        start = time.perf_counter()
        scores["oracle"][0] += int(oracle_correct(logits, y).sum())
        scores["oracle"][2] += time.perf_counter() - start
    return scores


if __name__ == "__main__":
    main()
