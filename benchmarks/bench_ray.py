"""Ray engine vs local engine on the same extraction work (issue 13).

The same images (the shipped CIFAR-10 demo test split, 2,000 JPEGs), the same backbones (the 4
zoo models), batch size and shard size, each run into a fresh float32 store:

  local       `clipfuse.extraction.extract` in this process (its default decode workers)
  ray         the Ray engine on a local Ray started here with `ray.init(num_cpus=<cores>)`

Ray's fixed start-up cost is measured apart from the work: `ray.init` itself, and an extraction
of one batch (64 images) with the same backbones, which is almost nothing but starting the
actors (each imports torch and open_clip and loads its model). Reported: ray wall / local wall
as run, and with the one-batch job's wall subtracted (the cost a long job amortises). Memory:
the peak summed PSS of this process and all its descendants (Ray's raylet, GCS, workers; the
object store's shared memory counted once), sampled every 0.25 s. Both stores must be equal
byte for byte. Torch runs one thread per process in both engines (OMP_NUM_THREADS=1, the
tests' setting): on this busy 2-core machine two spinning OpenMP threads slow the zoo's small
batches by an order of magnitude, and Ray's actors run one thread each anyway.

    python benchmarks/bench_ray.py                   # 2,000 images, 4 zoo backbones, 2 rounds
    python benchmarks/bench_ray.py --images 500 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

DEMO = Path(__file__).resolve().parents[1] / "src" / "clipfuse" / "demo_data" / "cifar10-demo"
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


def tree_pss_bytes(root: int) -> int:
    """Summed proportional set size of `root` and its descendants (shared pages counted once)."""
    tree, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


class PeakMemory:
    """Samples `tree_pss_bytes(this process)` in a thread; `.peak` in bytes."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed_extract(engine, backbones, dataset, root: Path, **options) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    with PeakMemory() as memory:
        start = time.perf_counter()
        report = engine.extract(backbones, dataset, FeatureStore(root), **options)
        wall = time.perf_counter() - start
    assert report.images_processed == len(dataset), report
    return {
        "wall_s": round(wall, 3),
        "peak_pss_mb": round(memory.peak / 2**20, 1),
        "load_1min": _machine.load_average(),
    }


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("views/*/*/shard-*")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--backbone", action="append", default=None)
    parser.add_argument("--rounds", type=int, default=2, help="alternating local/ray runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--object-store-mb", type=int, default=400)
    parser.add_argument("--out", default=None, help="JSON results file")
    args = parser.parse_args()

    import ray

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    specs = args.backbone or list(ZOO)
    backbones = [load_backbone(s) for s in specs]
    dataset = open_dataset(f"imagefolder:{DEMO}", "test", limit=args.images)
    one_batch = open_dataset(f"imagefolder:{DEMO}", "test", limit=args.batch_size)
    options = {
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
        "feature_dtype": "float32",
        "progress": False,
    }
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    result = {
        "machine": _machine.describe(),
        "images": len(dataset),
        "backbones": specs,
        **{k: v for k, v in options.items() if k != "progress"},
    }
    local_engine = get_engine("local")
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    runs["local"].append(timed_extract(local_engine, backbones, dataset, work / "local", **options))

    start = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count(),
        object_store_memory=args.object_store_mb * 2**20,
        include_dashboard=False,
        log_to_driver=False,
    )
    result["ray_init_s"] = round(time.perf_counter() - start, 3)
    ray_engine = get_engine("ray")
    result["ray_one_batch"] = timed_extract(
        ray_engine, backbones, one_batch, work / "one-batch", **options
    )
    for round_ in range(args.rounds):
        runs["ray"].append(timed_extract(ray_engine, backbones, dataset, work / "ray", **options))
        if round_ + 1 < args.rounds:
            runs["local"].append(
                timed_extract(local_engine, backbones, dataset, work / "local", **options)
            )
    result["identical_stores"] = shard_bytes(work / "local") == shard_bytes(work / "ray")
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    local_wall = min(r["wall_s"] for r in runs["local"])
    ray_wall = min(r["wall_s"] for r in runs["ray"])
    fixed = result["ray_one_batch"]["wall_s"]
    result.update(
        runs=runs,
        local_wall_s=local_wall,
        ray_wall_s=ray_wall,
        ratio_as_run=round(ray_wall / local_wall, 3),
        ratio_without_actor_startup=round(max(ray_wall - fixed, 0.0) / local_wall, 3),
        ray_peak_pss_mb=max(r["peak_pss_mb"] for r in runs["ray"]),
        local_peak_pss_mb=max(r["peak_pss_mb"] for r in runs["local"]),
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
