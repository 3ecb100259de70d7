"""Controllers (nlc, nlc_residual): ablations of each new part on the demo protocol, and fit time.

Ablations (registered here only, never shipped; each is the shipped class under another name with
one parameter changed): ``nlc_drop0.2`` = NLC with ``backbone_dropout=0.2``; for ``nlc_residual``
(start ``shrunk_mix``, raw logits, ``residual_penalty=1``): ``nlc_residual_calib`` = the calibrated
temperatures as the start, ``nlc_residual_std`` = ``logit_norm="std"``, ``nlc_residual_pen0`` = no
pull back toward the start, ``nlc_residual_drop0.2`` = with backbone dropout. Demo protocol only
(hold-outs from the 500 demo train images, evaluation on the 2,000 demo test images, seeds 0-4).
Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_controllers.py --store /tmp/fusion/store
    PYTHONPATH=src python benchmarks/bench_controllers.py --fit-time
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _fusion_bench import demo_table, time_fits  # noqa: E402
from _machine import describe  # noqa: E402

from clipfuse.combiners.nlc import NLC  # noqa: E402
from clipfuse.combiners.nlc_residual import NLCResidual  # noqa: E402
from clipfuse.combiners.registry import register_combiner  # noqa: E402

ABLATIONS = {
    "nlc_drop0.2": (NLC, {"backbone_dropout": 0.2}),
    "nlc_residual_calib": (NLCResidual, {"start": "calibration"}),
    "nlc_residual_std": (NLCResidual, {"logit_norm": "std"}),
    "nlc_residual_pen0": (NLCResidual, {"residual_penalty": 0.0}),
    "nlc_residual_drop0.2": (NLCResidual, {"backbone_dropout": 0.2}),
}


def _register_ablations() -> dict[str, dict]:
    """Register each variant under its own name; returns its parameters, keyed by that name."""
    for name, (base, _) in ABLATIONS.items():
        register_combiner(type(base.__name__ + "Ablation", (base,), {"name": name}))
    return {name: params for name, (_, params) in ABLATIONS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="clipfuse-bench-store")
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-time", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(describe()))
    if args.fit_time:
        time_fits(["nlc", "nlc_residual"])
        return
    params = _register_ablations()
    methods = ["nlc", "nlc_drop0.2", "nlc_residual", *list(params)[1:]]
    shots = [int(k) for k in args.shots.split(",")]
    demo_table(args.store, methods, shots, [int(s) for s in args.seeds.split(",")], params)


if __name__ == "__main__":
    main()
