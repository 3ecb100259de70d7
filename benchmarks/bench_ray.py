"""Ray engine vs local engine at a size where Ray's start-up is amortised (issues 13 and 24).

The same images (CIFAR-10 train from ../shared/data when it is there, else the shipped demo's
2,000 test images), the 4 zoo backbones, batch size and shard size, float16 features (the
default), each run into a fresh store:

  local       `clipfuse.extraction.extract` in this process (its default decode workers)
  ray         the Ray engine on a local Ray started here (`ray.init(num_cpus=<cores>)`), workers
              writing their shards into a local folder
  ray_s3      the same into `s3://bench/store` on a local S3 server (`moto_server` on 127.0.0.1
              in its own process, so its memory is not the driver's)

One run each, in that order, then a Ray run on `--small-images` images for the driver's memory
growth. Reported: wall times and ray / local, each run's time until its first result (start-up),
and memory: the driver process's own peak PSS (what must stay flat as the data grows: it holds
manifests and receipts, never features) and the peak summed PSS of this process and all its
descendants (Ray's raylet, GCS, workers), sampled every 0.25 s. The three stores must be equal
byte for byte. Torch runs one thread per process (OMP_NUM_THREADS=1, the tests' setting).

    nice -n 10 python benchmarks/bench_ray.py --images 20000 --small-images 5000 \
        --out benchmarks/results/ray-20k.json
    python benchmarks/bench_ray.py --images 500 --small-images 250     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: see --threads

import _machine  # noqa: E402
import torch  # noqa: E402

from clipfuse.backbones import load_backbone  # noqa: E402
from clipfuse.data import open_dataset  # noqa: E402
from clipfuse.engines import get_engine  # noqa: E402
from clipfuse.store import FeatureStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "clipfuse" / "demo_data" / "cifar10-demo"
CIFAR10_TRAIN = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-train.tar.gz"
ZOO = ("zoo:rn-tiny", "zoo:vit-p4", "zoo:vit-p8", "zoo:timm-convnext_atto")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss_bytes(root: int) -> int:
    """Summed proportional set size of `root` and its descendants (shared pages counted once)."""
    tree, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        total += pss_bytes(pid)
    return total


class PeakMemory:
    """Samples this process's PSS and its tree's in a thread; `.driver`, `.peak` in bytes."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()
        self.driver = 0

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
            self.driver = max(self.driver, pss_bytes(os.getpid()))
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed_extract(engine, backbones, dataset, location: str, **options) -> dict:
    with PeakMemory() as memory:
        start = time.perf_counter()
        report = engine.extract(backbones, dataset, FeatureStore(location), **options)
        wall = time.perf_counter() - start
    assert report.images_processed == len(dataset), report
    return {
        "wall_s": round(wall, 2),
        "first_result_s": round(report.first_batch_seconds or 0.0, 2),
        "images_per_s": round(len(dataset) / wall, 1),
        "driver_peak_pss_mb": round(memory.driver / 2**20, 1),
        "tree_peak_pss_mb": round(memory.peak / 2**20, 1),
        "load_1min": _machine.load_average(),
    }


def local_shards(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("views/*/*/shard-*")}


def s3_shards(url: str) -> dict[str, bytes]:
    store = FeatureStore(url)
    fs, root = store.files.fs, store.files.root
    return {
        p[len(root) + 1 :]: fs.cat_file(p) for p in fs.glob(f"{root}/views/*/*/shard-*.safetensors")
    }


def start_moto() -> subprocess.Popen:
    """`moto_server` on a free port of 127.0.0.1, and the AWS_* environment pointing at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--small-images", type=int, default=5000, help="driver memory baseline")
    parser.add_argument("--backbone", action="append", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--object-store-mb", type=int, default=400)
    parser.add_argument("--no-s3", action="store_true", help="skip the run into the S3 server")
    parser.add_argument(
        "--memory-only", action="store_true", help="only the two Ray runs (driver memory growth)"
    )
    parser.add_argument("--out", default=None, help="JSON results file")
    args = parser.parse_args()

    import ray

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    specs = args.backbone or list(ZOO)
    backbones = [load_backbone(s) for s in specs]
    if CIFAR10_TRAIN.is_file():
        source, split = f"imagefolder:{CIFAR10_TRAIN}", "train"
    else:
        source, split = f"imagefolder:{DEMO}", "test"
    dataset = open_dataset(source, split, limit=args.images)
    small = open_dataset(source, split, limit=args.small_images)
    options = {"batch_size": args.batch_size, "shard_size": args.shard_size, "progress": False}
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    result = {
        "machine": _machine.describe(),
        "source": source.replace(str(ROOT.parent), ".."),
        "split": split,
        "images": len(dataset),
        "small_images": len(small),
        "backbones": specs,
        **{k: v for k, v in options.items() if k != "progress"},
    }
    if not args.memory_only:
        result["local"] = timed_extract(
            get_engine("local"), backbones, dataset, str(work / "local"), **options
        )
    os.environ["RAY_worker_niceness"] = "0"  # Ray's default 15 starves workers on a shared box
    moto = (
        None if args.no_s3 or args.memory_only else start_moto()
    )  # before Ray: workers inherit AWS_*
    try:
        start = time.perf_counter()
        ray.init(
            num_cpus=os.cpu_count(),
            object_store_memory=args.object_store_mb * 2**20,
            include_dashboard=False,
            log_to_driver=False,
        )
        result["ray_init_s"] = round(time.perf_counter() - start, 2)
        engine = get_engine("ray")
        # the small run first: a driver that kept memory from the large run would hide growth
        result["ray_small"] = timed_extract(
            engine, backbones, small, str(work / "small"), **options
        )
        result["ray"] = timed_extract(engine, backbones, dataset, str(work / "ray"), **options)
        if moto is not None:
            result["ray_s3"] = timed_extract(
                engine, backbones, dataset, "s3://bench/store", **options
            )
        ray.shutdown()
        reference = local_shards(work / "local")
        if not args.memory_only:
            result["ray_equals_local"] = local_shards(work / "ray") == reference
        if moto is not None:
            result["ray_s3_equals_local"] = s3_shards("s3://bench/store") == reference
    finally:
        if moto is not None:
            moto.terminate()
        shutil.rmtree(work, ignore_errors=True)

    local_wall = result.get("local", {}).get("wall_s")
    if local_wall:
        result["ratio_ray_local"] = round(result["ray"]["wall_s"] / local_wall, 3)
    if moto is not None and local_wall:
        result["ratio_ray_s3_local"] = round(result["ray_s3"]["wall_s"] / local_wall, 3)
    result["driver_memory_growth"] = round(
        result["ray"]["driver_peak_pss_mb"] / result["ray_small"]["driver_peak_pss_mb"] - 1, 3
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
