"""Zero-shot-initialised probes (issue 11): ablations on the demo protocol, and fit time.

Ablations (registered here only, plugin-style, never shipped): ``lp_shrunk`` = plain linear
probes + the same shrunk mix (what the zero-shot start buys), ``zs_probe_mean`` = the probes
fused by the mean of logits (what the shrunk mix buys), ``zs_probe_wd<X>`` = one fixed weight
decay at every budget (what the cross-validated choice buys). Demo protocol only (the tuning
set: hold-outs from the 500 demo train images, evaluation on the 2,000 demo test images).

    python benchmarks/bench_zs_probe.py --store /tmp/fusion/store
    python benchmarks/bench_zs_probe.py --store /tmp/fusion/store --per-backbone
    python benchmarks/bench_zs_probe.py --fit-time

``--per-backbone``: each backbone's probe head alone (shipped defaults) minus that backbone's own
zero-shot accuracy, on the same hold-out draws as ``evaluate`` (the "never worse than zero-shot
at 1 shot" check).
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
from bench_fusion import views  # noqa: E402

from clipfuse.combiners.registry import register_combiner  # noqa: E402
from clipfuse.heads.base import HeadBank  # noqa: E402
from clipfuse.heads.stack import HeadStack  # noqa: E402
from clipfuse.heads.zeroshot_probe import ZeroShotProbeHeads  # noqa: E402
from clipfuse.heads.zeroshot_stack import ZeroShotProbeMix  # noqa: E402

FIXED_WDS = (1.0, 10.0, 100.0)


def _register_ablations() -> list[str]:
    """Register the ablation variants; returns their names."""
    names = []
    lp = type("LinearProbeShrunk", (HeadStack,), {"name": "lp_shrunk", "head_kind": "linear",
              "inner_name": "shrunk_mix", "__module__": __name__})  # fmt: skip
    mean = type("ZeroShotProbeMean", (ZeroShotProbeMix,), {"name": "zs_probe_mean",
                "inner_name": "mean_logits", "__module__": __name__})  # fmt: skip
    for cls in (lp, mean):
        register_combiner(cls)
        names.append(cls.name)
    for wd in FIXED_WDS:

        def new_heads(self: HeadStack, wd: float = wd) -> HeadBank:
            params = {"weight_decays": [wd], "default_weight_decay": wd}
            return ZeroShotProbeHeads(params, device=self.device)

        cls = type(f"ZeroShotProbeWD{wd:g}", (ZeroShotProbeMix,),
                   {"name": f"zs_probe_wd{wd:g}", "_new_heads": new_heads, "__module__": __name__})  # fmt: skip
        register_combiner(cls)
        names.append(cls.name)
    return names


def per_backbone(store: str, shots: list[int], seeds: list[int]) -> None:
    """Probe head minus its own zero-shot, per backbone and seed (mean / worst / best)."""
    from clipfuse.evaluation.metrics import topk_accuracy

    for name in ("cifar10", "fashion-mnist"):
        pool, held = views("demo", name, store, progress=True)
        c = len(pool.classnames)
        for k in shots:
            deltas = []
            for seed in seeds:
                hold = pool.holdout(k, seed=seed)
                heads = ZeroShotProbeHeads().fit(hold.features, hold.logits, hold.labels, c, seed)
                probed = heads.logits(held.features, held.logits)
                for b in range(probed.shape[0]):
                    own = topk_accuracy(held.logits[b], held.labels)
                    deltas.append(100 * (topk_accuracy(probed[b], held.labels) - own))
            print(f"{name} {k}-shot: probe head - own zero-shot, mean "
                  f"{sum(deltas) / len(deltas):+.2f}, worst (backbone, seed) {min(deltas):+.2f}, "
                  f"best {max(deltas):+.2f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="clipfuse-bench-store")
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--methods", default=None, help="default: zs_probe + every ablation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-time", action="store_true")
    parser.add_argument("--per-backbone", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(describe()))
    if args.fit_time:
        time_fits(["zs_probe", "zs_probe_nlc"])
        return
    if args.per_backbone:
        shots = [int(k) for k in args.shots.split(",")]
        per_backbone(args.store, shots, [int(s) for s in args.seeds.split(",")])
        return
    ablations = _register_ablations()
    methods = args.methods.split(",") if args.methods else ["zs_probe", *ablations]
    shots = [int(k) for k in args.shots.split(",")]
    demo_table(args.store, methods, shots, [int(s) for s in args.seeds.split(",")])


if __name__ == "__main__":
    main()
