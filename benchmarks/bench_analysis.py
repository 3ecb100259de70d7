"""Benchmark the complementarity analysis at the scale of the paper's setting.

Default: 50,000 samples x the nine OpenAI CLIP backbones at their real embedding sizes
(1024, 512, 640, 768, 1024, 512, 512, 768, 768) x 1,000 classes, on 2 CPU threads.
Synthetic data with class structure and a shared latent factor (so accuracies, agreements and
CKA are non-trivial). Features are held as float16 like the feature store; logits are made
chunk by chunk (100 * f @ W^T, as the logits layer does) and streamed into the analysis, so the
(B, N, C) logits tensor (1.8 GB in float32) never exists. The timed analysis is what a user
runs by default: complementarity (accuracy, oracle, agreement, overlap, UpSet counts, JS
divergence) and CKA with method="auto"; the exact CKA is also run, as a reference for the
minibatch estimate, and timed apart. Reports wall and CPU seconds per stage (CPU seconds say
more on a shared machine) and the peak resident memory (resource.getrusage).

    python benchmarks/bench_analysis.py            # full size, target < 60 s of analysis
    python benchmarks/bench_analysis.py --no-exact # skip the exact-CKA reference run
    python benchmarks/bench_analysis.py --quick    # 5,000 samples x 100 classes, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from contextlib import contextmanager

import torch

from clipfuse.analysis import ComplementarityAccumulator, cka_matrix

OPENAI = {
    "RN50": 1024,
    "RN101": 512,
    "RN50x4": 640,
    "RN50x16": 768,
    "RN50x64": 1024,
    "ViT-B-32": 512,
    "ViT-B-16": 512,
    "ViT-L-14": 768,
    "ViT-L-14-336": 768,
}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(n: int, n_classes: int, seed: int, chunk: int = 8192):
    """Labels, float16 features per backbone (N, D_b) and text classifiers (C, D_b)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    latent_dim = 64
    features, classifiers = [], []
    for b, d in enumerate(OPENAI.values()):
        protos = torch.randn(n_classes, d, generator=g) / d**0.5
        mix = torch.randn(latent_dim, d, generator=g) / latent_dim**0.5
        strength = 4.5 + 0.25 * b  # ~40-75% top-1 on 1,000 classes; later backbones stronger
        out = torch.empty(n, d, dtype=torch.float16)
        gl = torch.Generator().manual_seed(seed + 1)  # same latent for every backbone
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            latent = torch.randn(e - s, latent_dim, generator=gl)
            x = strength * protos[y[s:e]] + latent @ mix + torch.randn(e - s, d, generator=g)
            out[s:e] = torch.nn.functional.normalize(x, dim=1).half()
        features.append(out)
        classifiers.append(
            torch.nn.functional.normalize(
                protos + 0.5 * torch.randn(n_classes, d, generator=g) / d**0.5, dim=1
            )
        )
    return y, features, classifiers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 samples x 100 classes")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2048, help="samples per logits chunk")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch CKA batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-exact", action="store_true", help="skip the exact O(N D^2) CKA reference run"
    )
    args = parser.parse_args()
    n = args.samples or (5_000 if args.quick else 50_000)
    c = args.classes or (100 if args.quick else 1_000)
    torch.set_num_threads(args.threads)
    names = list(OPENAI)
    print(
        f"{n} samples x {len(names)} backbones (dims {list(OPENAI.values())}) x {c} classes, "
        f"{args.threads} threads"
    )

    load_before = os.getloadavg()[0]
    baseline_rss = peak_rss_mib()  # the interpreter with torch imported, before any data
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}

    @contextmanager
    def stage(name: str):
        """Accumulate wall and process-CPU seconds (CPU time is robust to a busy machine)."""
        w, c = time.perf_counter(), time.process_time()
        yield
        wall[name] = wall.get(name, 0.0) + time.perf_counter() - w
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - c

    with stage("generate_features"):
        y, feats, classifiers = make_data(n, c, args.seed)

    acc = ComplementarityAccumulator(names)
    for s in range(0, n, args.chunk):
        with stage("generate_logits"):
            logits = torch.stack(
                [100.0 * f[s : s + args.chunk].float() @ w.T for f, w in zip(feats, classifiers)]
            )
        with stage("complementarity"):
            acc.update(logits, y[s : s + args.chunk])
        del logits
    with stage("complementarity"):
        result = acc.result()
    with stage("cka"):
        cka = cka_matrix(feats, names, batch_size=args.batch_size, seed=args.seed)  # auto
    rss_analysis = peak_rss_mib()  # ru_maxrss only grows: the peak of data + analysis
    reference = not args.no_exact and cka.method != "exact"
    if reference:
        with stage("cka_exact_reference"):
            exact = cka_matrix(feats, names, method="exact")

    analysis = ["complementarity", "cka"]  # the default analysis; the rest is setup or a reference
    print(f"  {'stage':<18} {'wall s':>8} {'cpu s':>8}")
    for k in wall:
        print(f"  {k:<18} {wall[k]:8.2f} {cpu[k]:8.2f}")
    analysis_wall = sum(wall[k] for k in analysis)
    analysis_cpu = sum(cpu[k] for k in analysis)
    print(
        f"  {'analysis total':<18} {analysis_wall:8.2f} {analysis_cpu:8.2f}   ({' + '.join(analysis)})"
    )
    print(
        f"  peak RSS {rss_analysis:.0f} MiB through the analysis, {peak_rss_mib():.0f} MiB "
        f"with the exact reference; {baseline_rss:.0f} MiB of it is Python + torch at import"
    )
    print(f"  load average (2 cores shared) {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"  accuracy {[round(float(a), 3) for a in result.accuracy]}")
    print(
        f"  oracle {result.oracle_accuracy:.3f} (gap {result.oracle_gap:+.3f}), "
        f"disagreement {result.mean_disagreement:.3f}, JS {result.mean_js_divergence:.3f} bits, "
        f"{len(result.intersections)} correct-set patterns"
    )
    summary = {
        "samples": n,
        "classes": c,
        "threads": args.threads,
        "wall_s": wall,
        "cpu_s": cpu,
        "analysis_wall_s": analysis_wall,
        "analysis_cpu_s": analysis_cpu,
        "peak_rss_mib_analysis": rss_analysis,
        "peak_rss_mib": peak_rss_mib(),
        "baseline_rss_mib": baseline_rss,
        "load_average_start": load_before,
    }
    summary["cka_method"] = cka.method
    print(f"  CKA method chosen by 'auto': {cka.method}")
    if reference:
        diff = float(abs(exact.matrix - cka.matrix).max())
        summary["cka_max_abs_diff_vs_exact"] = diff
        print(f"  CKA {cka.method} vs exact: max |diff| {diff:.4f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
