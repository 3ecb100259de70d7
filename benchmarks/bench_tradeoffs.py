"""The trade-offs behind extraction's defaults, measured on this machine (issue 7).

workers x threads   extraction wall time over the forward floor for several splits of the cores
                    between torch's threads and decode workers
decode cost         ms per image to read + decode, per distinct preprocessing, and with PIL's
                    JPEG draft mode (DCT scaling) -- which changes pixels, so it is not a default
batch size          encoder images/s at several batch sizes
layout / kernels    ResNets: channels-last chunks of 8 (the default) vs one NCHW batch; ViTs:
                    the MHA fast path; all: bf16 autocast
torch.compile       compile seconds and steady images/s against eager

  python benchmarks/bench_tradeoffs.py                 # ViT-B/32 + RN50 (+ zoo), 128 images
  python benchmarks/bench_tradeoffs.py --skip-compile
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import _machine
import bench_extraction as be
import torch
from PIL import Image

from clipfuse.backbones import Backbone

# (torch threads, decode workers)
SPLITS = ((2, 0), (2, 1), (2, 2), (2, 4), (1, 1))


def per_image_rate(backbone: Backbone, pixels: torch.Tensor, reps: int = 2) -> float:
    """Steady images/s of `encode_images` on one ready batch (best of `reps` after a warm-up)."""
    backbone.encode_images(pixels)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        backbone.encode_images(pixels)
        _machine.sync(backbone.device)
        best = min(best, time.perf_counter() - start)
    return len(pixels) / best


def workers_and_threads(setup: be.Setup, splits: Sequence[tuple[int, int]]) -> list[dict]:
    """Extraction wall over the forward floor (measured at the same thread count) per split."""
    rows, floors = [], {}
    print(f"\nworkers x threads ({setup.n} images, batch {setup.batch_size}; "
          f"floor = sum of pure forward times at the same thread count)")  # fmt: skip
    print(f"{'threads':>8}{'workers':>8}{'extract s':>11}{'floor s':>9}{'ratio':>8}{'load':>6}")
    with tempfile.TemporaryDirectory(prefix="clipfuse-tradeoff-") as tmp:
        for threads, workers in splits:
            torch.set_num_threads(threads)
            if threads not in floors:
                be.warm_up(setup)
                floors[threads] = be.run_forward_floor(setup).seconds
            setup.workers = workers
            seconds = be.run_clipfuse(setup, Path(tmp)).seconds
            row = {"threads": threads, "workers": workers, "extract_s": seconds,
                   "floor_s": floors[threads], "ratio": seconds / floors[threads],
                   "load": _machine.load_average()}  # fmt: skip
            rows.append(row)
            print(f"{threads:>8}{workers:>8}{seconds:11.2f}{floors[threads]:9.2f}"
                  f"{row['ratio']:8.3f}{row['load']:6.2f}", flush=True)  # fmt: skip
    torch.set_num_threads(max(t for t, _ in splits))
    return rows


def _decode(payload: bytes, draft: int | None) -> Image.Image:
    image = Image.open(io.BytesIO(payload))
    if draft:
        image.draft("RGB", (draft, draft))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale
    return image.convert("RGB")


def decode_costs(setup: be.Setup) -> dict:
    """CPU ms per image (one core): read + decode, each distinct preprocessing, and draft mode
    sized for the largest input, with how many preprocessed images draft leaves bit-identical."""
    payloads = [setup.dataset.read(i) for i in range(setup.n)]
    transforms = {be.preprocess_key(b): b for b in setup.backbones}
    largest = max(b.info.image_size for b in setup.backbones)
    out: dict = {}
    for draft in (None, largest):
        start = time.process_time()
        images = [_decode(p, draft) for p in payloads]
        out[f"decode_ms_draft{draft or 0}"] = 1e3 * (time.process_time() - start) / setup.n
        for key, backbone in transforms.items():
            start = time.process_time()
            pixels = [backbone.preprocess(image) for image in images]
            name = f"{backbone.info.image_size}px_draft{draft or 0}"
            out[f"preprocess_ms_{name}"] = 1e3 * (time.process_time() - start) / setup.n
            out.setdefault("_pixels", {})[(key, draft)] = pixels
    pix = out.pop("_pixels")
    for key, backbone in transforms.items():
        same = sum(torch.equal(a, b) for a, b in zip(pix[(key, None)], pix[(key, largest)]))
        out[f"draft_identical_{backbone.info.image_size}px"] = f"{same}/{setup.n}"
    forward_ms = {b.info.name: 1e3 / per_image_rate(b, _batch(setup, b)) for b in setup.backbones}
    out["forward_ms_per_image"] = forward_ms
    print("\ndecode and preprocessing, CPU ms per image on one core")
    for key, value in out.items():
        print(f"  {key}: {value if isinstance(value, str | dict) else round(value, 2)}")
    return out


def _batch(setup: be.Setup, backbone: Backbone, size: int | None = None) -> torch.Tensor:
    size = size or setup.batch_size
    images = [setup.dataset.load_image(i % setup.n) for i in range(size)]
    return torch.stack([backbone.preprocess(image) for image in images])


def batch_sizes(setup: be.Setup, sizes: Sequence[int] = (16, 32, 64, 128)) -> dict:
    """Encoder images/s by batch size (larger batches: bigger GEMMs, more memory)."""
    out = {}
    print(f"\nbatch size -> images/s ({torch.get_num_threads()} threads)")
    for backbone in setup.backbones:
        out[backbone.info.name] = {
            s: per_image_rate(backbone, _batch(setup, backbone, s)) for s in sizes
        }
        print(
            f"  {backbone.info.name[:28]:<30}"
            + "  ".join(f"{s}: {r:6.1f}" for s, r in out[backbone.info.name].items())
        )
    return out


def kernels(setup: be.Setup) -> dict:
    """Layouts and kernels: images/s, and how far the features move (max abs difference of the
    L2-normalised features) from clipfuse's fp32 default."""
    out = {}
    print("\nlayout and kernels (images/s; max |feature difference|)")
    for backbone in setup.backbones:
        pixels = _batch(setup, backbone)
        base_rate = per_image_rate(backbone, pixels)
        base = backbone.encode_images(pixels)
        row = {"fp32": base_rate}
        if backbone.channels_last:
            backbone.channels_last = False  # one NCHW batch, as before issue 7
            row["nchw_batch"] = per_image_rate(backbone, pixels)
            row["nchw_diff"] = float((backbone.encode_images(pixels) - base).abs().max())
            backbone.channels_last = True
        if backbone.info.family == "vit":
            torch.backends.mha.set_fastpath_enabled(False)
            row["no_mha_fastpath"] = per_image_rate(backbone, pixels)
            torch.backends.mha.set_fastpath_enabled(True)
        backbone.to(backbone.device, "bf16")
        row["bf16"] = per_image_rate(backbone, pixels)
        row["bf16_diff"] = float((backbone.encode_images(pixels) - base).abs().max())
        backbone.to(backbone.device, "fp32")
        out[backbone.info.name] = row
        print(f"  {backbone.info.name[:28]:<30}" + "  ".join(
            f"{k}: {v:.3g}" for k, v in row.items()))  # fmt: skip
    return out


def compiled(setup: be.Setup) -> dict:
    """torch.compile (inductor) of each image tower: compile seconds, steady images/s, max diff."""
    out = {}
    print("\ntorch.compile of the image tower (eager vs compiled images/s; compile s)")
    for backbone in setup.backbones:
        pixels = _batch(setup, backbone)
        eager_rate = per_image_rate(backbone, pixels)
        base = backbone.encode_images(pixels)
        model = backbone.model
        visual = model.visual
        model.visual = torch.compile(visual)
        try:
            start = time.perf_counter()
            feats = backbone.encode_images(pixels)
            compile_s = time.perf_counter() - start
            rate = per_image_rate(backbone, pixels)
        finally:
            model.visual = visual
        out[backbone.info.name] = {"eager": eager_rate, "compiled": rate, "compile_s": compile_s,
                                   "diff": float((feats - base).abs().max())}  # fmt: skip
        print(f"  {backbone.info.name[:28]:<30}eager {eager_rate:6.1f}  compiled {rate:6.1f}  "
              f"compile {compile_s:6.1f} s  diff {out[backbone.info.name]['diff']:.2g}", flush=True)  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    be.add_arguments(parser)
    parser.add_argument("--skip-compile", action="store_true")
    parser.set_defaults(images=128)
    args = parser.parse_args(argv)
    args.backbone = args.backbone or [s for s in be.default_specs() if "ViT-B-16" not in s]
    setup = be.open_setup(args)
    print(f"\n== trade-offs: {json_line(_machine.describe(args.device))}")
    figures = {"splits": workers_and_threads(setup, SPLITS)}
    mm = {"torch.mm": _machine.matmul_gflops()["best"], "oneDNN": _machine.onednn_matmul_gflops()}
    print("\nfp32 2048^3 matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in mm.items()))
    figures |= {"matmul": mm, "decode": decode_costs(setup), "batch_size": batch_sizes(setup),
                "kernels": kernels(setup)}  # fmt: skip
    if not args.skip_compile:
        figures["compile"] = compiled(setup)
    return figures


def json_line(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


if __name__ == "__main__":
    main()
