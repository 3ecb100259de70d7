"""What each CPU inference setting of `Backbone` buys, one at a time, in one process (issue 7).

For each backbone, the seconds to encode one batch of random pixels (best of `--reps`) under:

  torch            open_clip's forward as users run it: torch's kernels, the whole batch at once
  + chunks         the batch in `Backbone.chunk_images` chunks (channels-last for a ResNet)
  + oneDNN         linear layers and attention on oneDNN's kernels (`cpu_kernels`)
  + malloc         glibc keeps freed activation memory (`allocator`; process-wide, so last)

and the achieved GFLOP/s against the matrix-multiply rates of torch.mm and of oneDNN measured in
the same run. The last column is what `clipfuse extract` runs. `--compile` adds torch.compile
(inductor, on torch's kernels with chunks) with its compile time: does it pay here?

    python benchmarks/bench_cpu_kernels.py
    python benchmarks/bench_cpu_kernels.py --batch 32 --backbone benchmarks/configs/RN50.json:random
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

os.environ["CLIPFUSE_CPU_KERNELS"] = "default"  # load with torch's defaults; settings come later

import _machine  # noqa: E402
import torch  # noqa: E402

from clipfuse.backbones import Backbone, load_backbone  # noqa: E402
from clipfuse.backbones.allocator import keep_freed_memory  # noqa: E402
from clipfuse.backbones.cpu_kernels import (  # noqa: E402
    ENV,
    restore_default_kernels,
    use_onednn_kernels,
)

CONFIGS = Path(__file__).resolve().parent / "configs"
SPECS = tuple(f"{CONFIGS / name}.json:random" for name in ("ViT-B-32", "ViT-B-16", "RN50"))
STEPS = ("torch", "+ chunks", "+ oneDNN", "+ malloc")


def seconds_per_batch(backbone: Backbone, pixels: torch.Tensor, reps: int) -> float:
    backbone.encode_images(pixels)  # warm-up: oneDNN builds its kernels on first use
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        backbone.encode_images(pixels)
        best = min(best, time.perf_counter() - start)
    return best


def compile_column(backbones: list[Backbone], args) -> dict:
    """torch.compile of each image encoder (torch's kernels inside: inductor lowers its own ops,
    `cpu_kernels` steps aside while compiling), timed per chunk-sized call like the eager path."""
    out = {}
    print(f"\ntorch.compile (inductor), seconds per batch of {args.batch}:")
    for backbone in backbones:
        restore_default_kernels(backbone.model)
        compiled = torch.compile(backbone.model.encode_image)
        size, chunk = backbone.info.image_size, backbone.chunk_images or args.batch
        chunks = torch.randn(args.batch, 3, size, size).split(chunk)
        if backbone.channels_last:
            chunks = [c.contiguous(memory_format=torch.channels_last) for c in chunks]
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(chunks[0])
        compile_s = time.perf_counter() - start
        best = float("inf")
        for _ in range(args.reps):
            start = time.perf_counter()
            with torch.inference_mode():
                [compiled(c) for c in chunks]
            best = min(best, time.perf_counter() - start)
        name = Path(backbone.info.name.removesuffix(":random")).stem
        print(f"{name:<18} compile {compile_s:6.1f} s, then {best:6.2f} s per batch")
        out[name] = {"compile_s": compile_s, "seconds": best}
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", action="append", help="spec (repeat); default: 3 archs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {_machine.describe()}")
    backbones = [load_backbone(spec) for spec in args.backbone or SPECS]
    mm = _machine.matmul_gflops()["best"]
    onednn = _machine.onednn_matmul_gflops()
    print(f"matmul 2048^3 fp32: torch.mm {mm:.1f} GFLOP/s, oneDNN {onednn:.1f} GFLOP/s")
    whole_batch = {id(b): b.chunk_images for b in backbones}
    times: dict[str, list[float]] = {step: [] for step in STEPS}
    for step in STEPS:  # cumulative settings, every backbone under each
        if step == "+ oneDNN":
            del os.environ[ENV]
            for backbone in backbones:
                use_onednn_kernels(backbone.model)
        if step == "+ malloc":
            keep_freed_memory.cache_clear()
            if not keep_freed_memory():
                print("(glibc malloc settings unavailable here: the last column repeats)")
        for backbone in backbones:
            backbone.chunk_images = None if step == "torch" else whole_batch[id(backbone)]
            if step == "torch":
                backbone.channels_last = False
            elif backbone.info.family == "resnet":
                backbone.channels_last = True
            size = backbone.info.image_size
            pixels = torch.randn(args.batch, 3, size, size)
            times[step].append(seconds_per_batch(backbone, pixels, args.reps))
    print(f"\nseconds per batch of {args.batch} (best of {args.reps}); GFLOP/s of the last column")
    print(f"{'backbone':<18}" + "".join(f"{s:>11}" for s in STEPS) + f"{'speed-up':>10}"
          f"{'GFLOP/s':>9}{'of oneDNN':>10}{'of mm':>7}")  # fmt: skip
    figures = {"matmul_torch_mm": mm, "matmul_onednn": onednn, "backbones": {}}
    for i, backbone in enumerate(backbones):
        row = [times[s][i] for s in STEPS]
        rate = backbone.info.image_gflops * args.batch / row[-1]
        name = Path(backbone.info.name.removesuffix(":random")).stem
        print(f"{name:<18}" + "".join(f"{t:11.2f}" for t in row) + f"{row[0] / row[-1]:9.2f}x"
              f"{rate:9.1f}{rate / onednn:10.0%}{rate / mm:7.0%}")  # fmt: skip
        figures["backbones"][name] = {"seconds": dict(zip(STEPS, row)), "gflop_per_s": rate}
    if args.compile:
        figures["compile"] = compile_column(backbones, args)
    speedups = " ".join(
        f"{n}={f['seconds']['torch'] / f['seconds']['+ malloc']:.2f}x"
        for n, f in figures["backbones"].items()
    )
    print(f"RATIOS torch/clipfuse forward: {speedups}")
    return figures


if __name__ == "__main__":
    main()
