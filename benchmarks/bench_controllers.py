"""Fit time of the controllers (nlc, nlc_residual) at 1,000 classes x 9 backbones x 1 shot.

Same synthetic world as ``bench_fusion.py --fit-time`` (tests/synthetic.py SyntheticWorld), kept
in its own script so the two can change independently. Run from the repository root:
``PYTHONPATH=src:tests python benchmarks/bench_controllers.py --threads 2``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="nlc,nlc_residual")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from synthetic import SyntheticWorld

    from clipfuse.combiners import make_combiner

    dims = (1024, 512, 640, 768, 1024, 512, 512, 768, 768)
    world = SyntheticWorld(
        num_backbones=9, num_classes=1000, feature_dims=dims, competent_margin=0.1, seed=0
    )
    train = world.sample(1, seed=0)
    for name in args.methods.split(","):
        start = time.perf_counter()
        make_combiner(name).fit(train.features, train.logits, train.y)
        elapsed = time.perf_counter() - start
        print(f"fit {name} at 1,000 classes x 9 backbones x 1 shot: {elapsed:.2f} s", flush=True)


if __name__ == "__main__":
    main()
