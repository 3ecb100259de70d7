"""Saved single-backbone ensemble: `predict` that loads and encodes only the chosen backbone
(issue 22: ``required_backbones()`` follows the fitted weights) vs the behaviour before, which
loaded and encoded every backbone of the ensemble, side by side in one run.

Setup: the four zoo backbones over the shipped CIFAR-10 demo train split (a feature store in
--work), ``best_single`` fitted on a 4-shot hold-out (seed 0) and saved. Timed per side: load the
ensemble file, load its backbones, predict --images shipped demo test images (written as PNG
files). "all backbones" is the same code with ``required_backbones`` forced to every position
(what the file's combiner reported before the weighted pool). Sides alternate --reps times; the
median is reported, and both sides' labels and probabilities must agree.

    python benchmarks/bench_pool_predict.py                 # 500 images, 3 reps
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import _machine
from PIL import Image

import clipfuse
from clipfuse.ensemble.saved import SavedEnsemble

SPECS = ["zoo:rn-tiny", "zoo:vit-p4", "zoo:vit-p8", "zoo:timm-convnext_atto"]


def demo_images(folder: Path, n: int) -> list[Path]:
    """The first n shipped demo test images, as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    archive = Path(clipfuse.demo_source("cifar10").split(":", 1)[1]) / "test.tar"
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and len(paths) < n:
                paths.append(folder / f"{len(paths)}.png")
                Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB").save(paths[-1])
    return paths


def run(path: Path, images: list[Path], all_backbones: bool) -> tuple[float, list]:
    start = time.perf_counter()
    ens = SavedEnsemble.load(path)
    if all_backbones:  # the file's combiner as it reported itself before issue 22
        ens.combiner.required_backbones = lambda: list(range(len(ens.backbones)))
    records = ens.predict(images, batch_size=64)
    return time.perf_counter() - start, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "clipfuse-bench-pool"))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work)
    train = clipfuse.load_views(SPECS, clipfuse.demo_source("cifar10"), splits="train",
                                store=work / "store")  # fmt: skip
    ens = clipfuse.fit_ensemble(train, "best_single", shots=4, seed=0)
    path = ens.save(work / "best_single.safetensors")
    images = demo_images(work / "images", args.images)
    chosen = ens.backbones[ens.combiner.chosen_backbone()]["spec"]
    times: dict[str, list[float]] = {"one backbone (now)": [], "all backbones (before)": []}
    outputs = {}
    run(path, images[:8], False)  # warm-up: imports, file cache
    for _ in range(args.reps):
        for name, everything in (("all backbones (before)", True), ("one backbone (now)", False)):
            seconds, outputs[name] = run(path, images, everything)
            times[name].append(seconds)
    a, b = outputs.values()
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert max(abs(x["probability"] - y["probability"]) for x, y in zip(a, b)) < 1e-5
    print(f"machine: {_machine.describe('cpu')}")
    print(f"best_single chose {chosen} of {len(SPECS)}; {len(images)} images, {args.reps} reps")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, seconds in med.items():
        print(f"  {name:24s} {seconds:6.2f} s  ({len(images) / seconds:6.1f} img/s)")
    print(f"  speed-up: {med['all backbones (before)'] / med['one backbone (now)']:.2f}x")


if __name__ == "__main__":
    main()
