"""Extraction speed, side by side on the same backbones, images, batch size and threads (issue 7).

Five ways to get every backbone's image features for the same images, in one process:

  clipfuse        `clipfuse.extraction.extract` into a fresh float32 store: each image decoded
                  once (in DataLoader workers, or between batches where its default picks no
                  workers), each backbone's own preprocessing applied to it, the encoders run
                  in the main process
  plain loop      what users write today: for each backbone (a fresh open_clip model), for
                  each image PIL open -> preprocess -> batch -> encode_image (every image
                  decoded again per backbone, in the main process)
  same-kernel loop  the plain loop encoding with clipfuse's `Backbone.encode_images` (its CPU
                  kernels and chunks): its difference to clipfuse is decoding once alone
  CLIP_benchmark  its zero-shot evaluation, backbone by backbone, in-process, on the same images
                  written in its WebDataset layout; its image part (`run_classification`: loading,
                  decoding, preprocessing, encoding) and its text part (`zero_shot_classifier`)
                  are timed separately, and only the image part is compared
  forward floor   each encoder alone on already-preprocessed pixels; the sum over backbones is
                  what extraction would cost if decoding were entirely hidden

The four real paths must give identical zero-shot predictions (argmax of each sample's logits
against CLIP_benchmark's text classifier of that backbone). Each backbone's achieved rate during
extraction (image GFLOPs x images/s) is compared with the matrix-multiply rate measured in the
same process with the same thread count.

    python benchmarks/bench_extraction.py                 # 3 ViT/RN architectures + the zoo
    python benchmarks/bench_extraction.py --images 64 --backbone benchmarks/configs/RN50.json:random
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import _machine
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from clipfuse.backbones import Backbone, list_backbones, load_backbone
from clipfuse.backbones.spec import ZOO_DIR
from clipfuse.data import ImageDataset, open_dataset
from clipfuse.extraction import extract
from clipfuse.extraction.engine import default_workers, preprocess_key
from clipfuse.store import FeatureStore

CONFIGS = Path(__file__).resolve().parent / "configs"
ARCH_SPECS = tuple(f"{CONFIGS / name}.json:random" for name in ("ViT-B-32", "ViT-B-16", "RN50"))
DATA = "imagefolder:/work/shared/data/imagenet-sample/imagenet-sample-1000.tar"
TEMPLATE = "a photo of a {c}."  # one prompt per class: the text side is not what is measured
MODEL_CACHE = Path(os.environ.get("CLIPFUSE_CACHE", "~/.cache/clipfuse")).expanduser() / "bench"


def default_specs() -> list[str]:
    """ViT-B/32-, ViT-B/16- and RN50-sized random models, then every zoo model present now."""
    return [*ARCH_SPECS, *(entry.spec for entry in list_backbones("zoo:*"))]


@dataclass
class Setup:
    backbones: list[Backbone]
    dataset: ImageDataset
    batch_size: int
    workers: int
    device: str = "cpu"
    precision: str = "fp32"
    classes: list[int] = field(default_factory=list)  # dataset class indices present, in order

    @property
    def n(self) -> int:
        return len(self.dataset)

    @property
    def targets(self) -> np.ndarray:
        """Labels re-indexed over the classes present (the zero-shot problem every path solves)."""
        return np.searchsorted(self.classes, self.dataset.labels)

    def batches(self) -> list[range]:
        return [
            range(s, min(s + self.batch_size, self.n)) for s in range(0, self.n, self.batch_size)
        ]


@dataclass
class PathResult:
    seconds: float  # wall clock for all backbones
    features: list[
        np.ndarray
    ]  # per backbone (N, D) float32, selection order (none: CLIP_benchmark)
    encode_seconds: list[float] = field(default_factory=list)  # time inside each encoder
    extra: dict = field(default_factory=dict)


@contextmanager
def timed_encoders(backbones: Sequence[Backbone]):
    """Accumulate the seconds spent inside each backbone's `encode_images` (synchronised)."""
    totals = [0.0] * len(backbones)
    for i, backbone in enumerate(backbones):

        def timed(pixels, _encode=backbone.encode_images, _i=i, _device=backbone.device):
            start = time.perf_counter()
            out = _encode(pixels)
            _machine.sync(_device)
            totals[_i] += time.perf_counter() - start
            return out

        backbone.encode_images = timed  # instance attribute shadows the method
    try:
        yield totals
    finally:
        for backbone in backbones:
            del backbone.encode_images


def warm_up(setup: Setup) -> None:
    """One full batch per encoder before any timing (oneDNN builds its kernels on first use)."""
    for backbone in setup.backbones:
        size = backbone.info.image_size
        backbone.encode_images(torch.zeros(setup.batch_size, 3, size, size))


def _extract(setup: Setup, workdir: Path):
    store = FeatureStore(Path(tempfile.mkdtemp(dir=workdir)))
    report = extract(
        setup.backbones,
        setup.dataset,
        store,
        batch_size=setup.batch_size,
        num_workers=setup.workers,
        feature_dtype="float32",
        progress=False,
    )
    assert report.images_processed == setup.n and not report.failures, report
    return store, report


def run_clipfuse(setup: Setup, workdir: Path) -> PathResult:
    """`extract` into a fresh float32 store; wall time covers decoding, encoding and writing."""
    with timed_encoders(setup.backbones) as encode_s:
        start = time.perf_counter()
        store, report = _extract(setup, workdir)
        seconds = time.perf_counter() - start
    features = []
    for backbone in setup.backbones:
        data = store.entry(report.entries[backbone.info.name]).read()
        assert np.array_equal(data.indices, np.arange(setup.n))
        features.append(np.array(data.features, dtype=np.float32))
    return PathResult(seconds, features, list(encode_s))


def peak_memory(setup: Setup, workdir: Path, batches: int = 3) -> dict:
    """Peak memory of an extraction, in its own untimed run over the first few batches (the
    peak is models + batches in flight, reached at once). Reading the PSS of a process walks
    its page tables (~50 ms for 3 GB), so sampling during the timed run would slow it."""
    subset = Setup(
        **{**setup.__dict__, "dataset": setup.dataset.subset(batches * setup.batch_size)}
    )
    cuda = torch.device(setup.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with _machine.PeakMemory(interval=0.25) as memory:
        _extract(subset, workdir)
    out = {"peak_pss_gib": memory.peak_gib, "max_rss_main_gib": _machine.max_rss_gib()}
    if cuda:
        out["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    return out


def _autocast(setup: Setup):
    if setup.precision == "fp32":
        return torch.autocast(torch.device(setup.device).type, enabled=False)
    return torch.autocast(torch.device(setup.device).type, dtype=torch.bfloat16)


def run_plain_loop(setup: Setup) -> PathResult:
    """What users write: per backbone, a fresh open_clip model (loaded untimed), then per image
    PIL open -> its preprocess -> batch -> encode_image under no_grad -> normalize."""
    import open_clip

    def encoders():
        for backbone in setup.backbones:
            model, _, preprocess = open_clip.create_model_and_transforms(
                f"local-dir:{local_dir(backbone)}", device=setup.device
            )
            model.eval()

            def encode(pixels, model=model):
                with torch.no_grad(), _autocast(setup):
                    feats = model.encode_image(pixels.to(setup.device))
                return F.normalize(feats.float(), dim=-1)

            size = backbone.info.image_size
            encode(torch.zeros(setup.batch_size, 3, size, size))  # untimed warm-up, as for all
            yield preprocess, encode

    return _per_backbone_loop(setup, encoders())


def run_loop_same_kernels(setup: Setup) -> PathResult:
    """The same per-backbone loop, encoding with clipfuse's `Backbone.encode_images` (its CPU
    kernels and chunks): what separates it from clipfuse is decoding once, nothing else."""
    return _per_backbone_loop(setup, ((b.preprocess, b.encode_images) for b in setup.backbones))


def _per_backbone_loop(setup: Setup, encoders) -> PathResult:
    """For each (preprocess, encode): every image opened and decoded again, batched, encoded."""
    features, encode_s, seconds = [], [], 0.0
    for preprocess, encode in encoders:
        rows, spent = [], 0.0
        start = time.perf_counter()
        for batch in setup.batches():
            images = [Image.open(io.BytesIO(setup.dataset.read(i))) for i in batch]
            pixels = torch.stack([preprocess(image.convert("RGB")) for image in images])
            t0 = time.perf_counter()
            rows.append(encode(pixels).cpu().numpy())
            spent += time.perf_counter() - t0
        seconds += time.perf_counter() - start
        features.append(np.concatenate(rows))
        encode_s.append(spent)
    return PathResult(seconds, features, encode_s)


def pixel_batches(setup: Setup) -> dict[str, list[torch.Tensor]]:
    """Every batch decoded once and preprocessed once per distinct preprocessing (the untimed
    input of the forward floor)."""
    transforms = {preprocess_key(b): b.preprocess for b in setup.backbones}
    out: dict[str, list[torch.Tensor]] = {key: [] for key in transforms}
    for batch in setup.batches():
        images = [setup.dataset.load_image(i) for i in batch]
        for key, transform in transforms.items():
            out[key].append(torch.stack([transform(image) for image in images]))
    return out


def run_forward_floor(setup: Setup) -> PathResult:
    """Each encoder alone on ready pixels: the floor extraction can reach on this machine."""
    pixels = pixel_batches(setup)
    features, encode_s = [], []
    for backbone in setup.backbones:
        batches = pixels[preprocess_key(backbone)]
        if setup.device != "cpu":
            batches = [b.pin_memory() for b in batches]
        _machine.sync(setup.device)
        start = time.perf_counter()
        rows = [backbone.encode_images(b) for b in batches]
        _machine.sync(setup.device)
        encode_s.append(time.perf_counter() - start)
        features.append(torch.cat(rows).cpu().numpy())
    return PathResult(sum(encode_s), features, encode_s)


def local_dir(backbone: Backbone) -> Path:
    """An open_clip `local-dir:` folder CLIP_benchmark can load: zoo and local-dir backbones are
    one already; a random model is saved once (config + safetensors), keyed by its fingerprint."""
    if backbone.spec.kind == "local-dir":
        return Path(backbone.spec.location)
    if backbone.spec.kind == "zoo":
        return ZOO_DIR / backbone.spec.location
    if backbone.spec.kind != "random":
        raise SystemExit(
            f"{backbone.spec.raw}: the benchmark takes random, zoo or local-dir models"
        )
    target = MODEL_CACHE / backbone.info.fingerprint
    if not (target / "open_clip_config.json").is_file():
        MODEL_CACHE.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=MODEL_CACHE))
        raw = json.loads(Path(backbone.spec.location).read_text())
        pp = {
            k: backbone.info.preprocess[k] for k in ("mean", "std", "interpolation", "resize_mode")
        }
        config = {"model_cfg": raw.get("model_cfg", raw), "preprocess_cfg": pp}
        (scratch / "open_clip_config.json").write_text(json.dumps(config))
        state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
        save_file(state, str(scratch / "open_clip_model.safetensors"))
        os.replace(scratch, target)  # atomic; a concurrent run's identical folder may win
    return target


def write_wds(setup: Setup, root: Path, shards: int) -> Path:
    """The images in CLIP_benchmark's WebDataset layout (root/test/{0..S-1}.tar with key.jpg and
    key.cls, classnames.txt, zeroshot_classification_templates.txt). Batch j goes to shard
    j % S: its DataLoader gives worker w shard w and takes batches round-robin, so it sees the
    images in selection order (checked against the targets it returns)."""
    (root / "test").mkdir(parents=True)
    targets = setup.targets
    tars = [tarfile.open(root / "test" / f"{s}.tar", "w") for s in range(shards)]
    for j, batch in enumerate(setup.batches()):
        for i in batch:
            for suffix, payload in (
                ("jpg", setup.dataset.read(i)),
                ("cls", str(targets[i]).encode()),
            ):
                info = tarfile.TarInfo(f"s{i:06d}.{suffix}")
                info.size = len(payload)
                tars[j % shards].addfile(info, io.BytesIO(payload))
    for tar in tars:
        tar.close()
    (root / "test" / "nshards.txt").write_text(f"{shards}\n")
    names = [setup.dataset.classnames[c] for c in setup.classes]
    (root / "classnames.txt").write_text("\n".join(names) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text(TEMPLATE + "\n")
    return root


def run_clip_benchmark(setup: Setup, workdir: Path) -> PathResult:
    """CLIP_benchmark's own pieces, as its `eval` command chains them for a `wds/` dataset
    (load_clip -> build_dataset -> DataLoader(dataset.batched(bs)) -> zero_shot_classifier ->
    run_classification), backbone by backbone; amp off so that it runs in float32 like the others."""
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification
    from clip_benchmark.metrics.zeroshot_classification import (
        run_classification,
        zero_shot_classifier,
    )
    from clip_benchmark.models import load_clip

    zeroshot_classification.tqdm = lambda iterable, **_: iterable  # its progress bars, off
    shards = max(1, setup.workers)
    root = workdir / "wds"
    if not root.is_dir():  # written once, read by every run
        write_wds(setup, root, shards)
    amp = setup.precision != "fp32"  # CLIP_benchmark's only switch: autocast's default dtype
    image_s, text_s, classifiers, logits_all = [], [], [], []
    for backbone in setup.backbones:
        model, transform, tokenizer = load_clip(
            "open_clip", f"local-dir:{local_dir(backbone)}", None, None, setup.device
        )
        model.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = build_dataset("wds/bench", root=str(root), transform=transform, split="test")
        loader = torch.utils.data.DataLoader(
            dataset.batched(setup.batch_size), batch_size=None, shuffle=False,
            num_workers=setup.workers,
        )  # fmt: skip
        size = backbone.info.image_size
        with torch.no_grad():  # untimed warm-up of this model copy, as for the other paths
            model.encode_image(torch.zeros(setup.batch_size, 3, size, size, device=setup.device))
        start = time.perf_counter()
        classifier = zero_shot_classifier(
            model, tokenizer, dataset.classes, dataset.templates, setup.device, amp=amp
        )
        _machine.sync(setup.device)
        text_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        logits, target = run_classification(model, classifier, loader, setup.device, amp=amp)
        _machine.sync(setup.device)
        image_s.append(time.perf_counter() - start)
        if not np.array_equal(target.numpy(), setup.targets):
            raise SystemExit("CLIP_benchmark saw the images in another order than expected")
        classifiers.append(classifier.float().cpu())
        logits_all.append(logits)
        del model, loader
    extra = {"text_seconds": text_s, "classifiers": classifiers, "logits": logits_all}
    return PathResult(sum(image_s), [], image_s, extra)


def predictions(result: PathResult, classifiers: list[torch.Tensor]) -> list[np.ndarray]:
    """Argmax of each sample's zero-shot logits, per backbone (the path's own logits if it made
    them, else its features against the shared text classifier)."""
    if "logits" in result.extra:
        return [lg.argmax(1).numpy() for lg in result.extra["logits"]]
    return [
        (torch.from_numpy(f) @ w).argmax(1).numpy() for f, w in zip(result.features, classifiers)
    ]


def open_setup(args) -> Setup:
    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, args.split, limit=args.images)
    backbones = [
        load_backbone(s, device=args.device, precision=args.precision) for s in args.backbone
    ]
    workers = default_workers(backbones) if args.workers is None else args.workers
    setup = Setup(backbones, dataset, args.batch_size, workers, args.device, args.precision)
    setup.classes = sorted(set(dataset.labels.tolist()))
    return setup


def report(
    setup: Setup, results: dict[str, PathResult], mm: dict, gflops: list[float], memory: dict
) -> dict:
    """Print the side-by-side table; return the figures (for JSON and the ratio line)."""
    n, names = setup.n, [b.info.name for b in setup.backbones]
    cf, floor = results["clipfuse"], results["floor"]
    classifiers = (
        results["clip_benchmark"].extra["classifiers"] if "clip_benchmark" in results else None
    )
    print(
        f"\n{'path':<16}{'seconds':>9}{'images/s':>10}{'vs clipfuse':>13}{'load':>7}   all runs, s"
    )
    figures: dict = {"paths": {}, "backbones": {}}
    for path, res in results.items():
        ratio = res.seconds / cf.seconds
        figures["paths"][path] = {
            "seconds": res.seconds,
            "images_per_s": n / res.seconds,
            "x_clipfuse": ratio,
            "load_1min": res.extra["load_1min"],
            "runs_s": res.extra["runs_s"],
        }
        print(f"{path:<16}{res.seconds:9.2f}{n / res.seconds:10.2f}{ratio:12.2f}x"
              f"{res.extra['load_1min']:7.2f}   {', '.join(f'{r:.1f}' for r in res.extra['runs_s'])}")  # fmt: skip
    if "clip_benchmark" in results:
        text = sum(results["clip_benchmark"].extra["text_seconds"])
        print(f"(CLIP_benchmark text classifiers, not compared: {text:.1f} s)")
    print(f"\nmatmul {mm['n']}^3 {mm['dtype']}: torch.mm best {mm['best']:.1f} GFLOP/s, median "
          f"{mm['median']:.1f}; oneDNN {mm['onednn']:.1f}; ceiling = the faster, "
          f"{mm['ceiling']:.1f}")  # fmt: skip
    head = (
        f"{'backbone':<28}{'GFLOPs':>8}{'fwd s':>8}{'in-extract s':>14}{'GFLOP/s':>9}{'of ceil':>8}"
        f"{'of mm':>9}"
    )
    compared = [p for p in ("plain_loop", "loop_same_kernels", "clip_benchmark") if p in results]
    print(head + f"   predictions equal to clipfuse's ({', '.join(compared)})")
    agree = {}
    if classifiers is not None:
        preds = {p: predictions(results[p], classifiers) for p in ["clipfuse", *compared]}
        agree = {
            p: [int((a == b).sum()) for a, b in zip(preds["clipfuse"], preds[p])] for p in compared
        }
    for b, name in enumerate(names):
        rate = gflops[b] * n / cf.encode_seconds[b]
        row = {
            "gflops": gflops[b], "forward_s": floor.encode_seconds[b],
            "in_extraction_s": cf.encode_seconds[b], "gflop_per_s": rate,
            "of_ceiling": rate / mm["ceiling"], "of_torch_mm": rate / mm["best"],
            "forward_of_ceiling": gflops[b] * n / floor.encode_seconds[b] / mm["ceiling"],
        }  # fmt: skip
        row.update({f"equal_{p}": agree[p][b] for p in agree})
        for p in ("plain_loop", "loop_same_kernels"):
            if p in results:
                diff = np.abs(cf.features[b] - results[p].features[b]).max()
                row[f"max_abs_feature_diff_{p}"] = float(diff)
        figures["backbones"][name] = row
        eq = ", ".join(f"{agree[p][b]}/{n}" for p in agree) or "-"
        print(f"{name[:27]:<28}{gflops[b]:8.2f}{floor.encode_seconds[b]:8.2f}{cf.encode_seconds[b]:14.2f}"
              f"{rate:9.1f}{rate / mm['ceiling']:8.0%}{rate / mm['best']:9.0%}   {eq}")  # fmt: skip
    figures["extraction_over_forward"] = cf.seconds / floor.seconds
    figures["memory"] = memory
    print(f"\nextraction wall / sum of pure forward times: {cf.seconds:.2f} / {floor.seconds:.2f} s "
          f"= {figures['extraction_over_forward']:.3f}")  # fmt: skip
    print(f"peak memory of extraction: {memory['peak_pss_gib']:.2f} GiB PSS (main + workers), "
          f"main max RSS {memory['max_rss_main_gib']:.2f} GiB")  # fmt: skip
    figures["matmul"] = mm
    return figures


def ratio_line(figures: dict) -> str:
    """One line: the ratios the targets are about."""
    p = figures["paths"]
    parts = [f"extract/forward={figures['extraction_over_forward']:.3f}"]
    for path, label in (
        ("plain_loop", "plain/clipfuse"),
        ("loop_same_kernels", "same-kernel-loop/clipfuse"),
        ("clip_benchmark", "CLIP_benchmark/clipfuse"),
    ):
        if path in p:
            parts.append(f"{label}={p[path]['x_clipfuse']:.2f}x")
    for name, row in figures["backbones"].items():
        parts.append(f"{Path(name.removesuffix(':random')).stem}={row['of_ceiling']:.0%}ceil")
    parts.append(f"peak={figures['memory']['peak_pss_gib']:.2f}GiB")
    return "RATIOS " + " ".join(parts)


def run(args) -> dict:
    """The whole side-by-side comparison; returns the figures."""
    setup = open_setup(args)
    machine = _machine.describe(args.device)
    print(f"machine: {json.dumps(machine)}")
    print(f"{setup.n} images, batch {setup.batch_size}, {setup.workers} decode workers, "
          f"{torch.get_num_threads()} torch threads, device {args.device}, {args.precision}")  # fmt: skip
    gflops = [b.info.image_gflops for b in setup.backbones]  # torch's counter, 2 per MAC
    mm_dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16
    mm = _machine.matmul_gflops(args.device, mm_dtype)
    mm["dtype"] = args.precision
    mm["onednn"] = _machine.onednn_matmul_gflops() if args.device == "cpu" else float("nan")
    mm["ceiling"] = max(mm["best"], mm["onednn"]) if args.device == "cpu" else mm["best"]
    warm_up(setup)
    paths = {
        "clipfuse": lambda tmp: run_clipfuse(setup, tmp),
        "plain_loop": None if args.skip_plain else lambda tmp: run_plain_loop(setup),
        "loop_same_kernels": None if args.skip_plain else lambda tmp: run_loop_same_kernels(setup),
        "floor": lambda tmp: run_forward_floor(setup),
        "clip_benchmark": None if args.skip_clip_benchmark else lambda tmp: run_clip_benchmark(setup, tmp),
    }  # fmt: skip
    results: dict[str, PathResult] = {}
    runs: dict[str, list[float]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory(prefix="clipfuse-bench-") as tmp:
        for rep in range(args.reps):  # paths alternate; each keeps its best run
            for name, path in paths.items():
                if path is None:
                    continue
                result = path(Path(tmp))
                result.extra["load_1min"] = _machine.load_average()
                runs[name].append(result.seconds)
                print(f"{name} run {rep + 1}: {result.seconds:.1f} s, load "
                      f"{result.extra['load_1min']}", flush=True)  # fmt: skip
                if name not in results or result.seconds < results[name].seconds:
                    results[name] = result
                if name == "clipfuse" and rep == 0:  # before other paths load model copies
                    memory = peak_memory(setup, Path(tmp))
    for name, result in results.items():
        result.extra["runs_s"] = runs[name]
    mm_after = _machine.matmul_gflops(args.device, mm_dtype)
    figures = report(setup, results, mm, gflops, memory)
    figures["matmul_after"] = mm_after
    machine["load_1min_end"] = _machine.load_average()
    figures["machine"] = machine
    figures["setup"] = {"images": setup.n, "batch_size": setup.batch_size, "workers": setup.workers,
                        "threads": torch.get_num_threads(), "device": args.device,
                        "precision": args.precision, "specs": args.backbone}  # fmt: skip
    print(
        f"matmul after the run: best {mm_after['best']:.1f} GFLOP/s; load {machine['load_1min_end']}"
    )
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", action="append", help="spec (repeat); default: 3 archs + zoo")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--split", default="all")
    parser.add_argument("--images", type=int, default=128, help="class-balanced subset size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=None, help="decode workers (clipfuse default)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--reps", type=int, default=3, help="runs per path (best is kept)")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--skip-clip-benchmark", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.backbone = args.backbone or default_specs()
    figures = run(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    print(ratio_line(main()))
