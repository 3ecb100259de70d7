"""Ray engine vs local engine on the same extraction work (issue 13).

The same images (the shipped CIFAR-10 demo test split, 2,000 JPEGs), the same backbones (the 4
zoo models), batch size and shard size, each run into a fresh float32 store:

  local       `clipfuse.extraction.extract` in this process (its default decode workers)
  ray         the Ray engine on a local Ray started here with `ray.init(num_cpus=<cores>)`

One local run comes first (its memory is measured before any Ray process exists), then Ray
starts and Ray runs (for each `--batches-per-block`) alternate with local runs, best of
`--rounds` each, so that both see the machine's load. Ray's fixed start-up cost is measured
apart from the work: `ray.init` itself, and each run's time until its first encoded batch
reached the driver (for Ray: starting the actors, each importing torch and open_clip and loading
its model; `--one-batch` also times a job of one batch). Reported: ray wall / local wall as run,
and the ratio of seconds per image after the first result (what a long job pays per image). Memory:
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
    first = report.first_batch_seconds or 0.0
    return {
        "wall_s": round(wall, 3),
        "first_batch_s": round(first, 3),
        "after_first_batch_s": round(wall - first, 3),
        "peak_pss_mb": round(memory.peak / 2**20, 1),
        "load_1min": _machine.load_average(),
    }


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("views/*/*/shard-*")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--backbone", action="append", default=None)
    parser.add_argument("--rounds", type=int, default=2, help="runs per engine (best is kept)")
    parser.add_argument(
        "--batches-per-block", default="1,4", help="Ray block sizes to compare, in batches"
    )
    parser.add_argument(
        "--worker-niceness",
        type=int,
        default=None,
        help="Ray workers' nice level (Ray's default: 15; 0 = the driver's, fair on a shared machine)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--object-store-mb", type=int, default=400)
    parser.add_argument(
        "--one-batch", action="store_true", help="also time a one-batch job (start-up alone)"
    )
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
    local_runs = [timed_extract(local_engine, backbones, dataset, work / "local", **options)]
    result["local_peak_pss_mb"] = local_runs[0]["peak_pss_mb"]  # before Ray's processes exist

    if args.worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # read by the raylet
    result["ray_worker_niceness"] = int(os.environ.get("RAY_worker_niceness", 15))
    start = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count(),
        object_store_memory=args.object_store_mb * 2**20,
        include_dashboard=False,
        log_to_driver=False,
    )
    result["ray_init_s"] = round(time.perf_counter() - start, 3)
    per_block = [int(v) for v in args.batches_per_block.split(",")]
    engines = {k: get_engine("ray", batches_per_block=k) for k in per_block}
    if args.one_batch:
        result["ray_one_batch"] = timed_extract(
            engines[per_block[0]], backbones, one_batch, work / "one-batch", **options
        )
    ray_runs: dict[int, list[dict]] = {k: [] for k in per_block}
    identical = True
    for _ in range(args.rounds):  # interleaved, so that both engines see the same load
        for k, engine in engines.items():
            ray_runs[k].append(timed_extract(engine, backbones, dataset, work / "ray", **options))
            identical &= shard_bytes(work / "local") == shard_bytes(work / "ray")
        local_runs.append(
            timed_extract(local_engine, backbones, dataset, work / "local", **options)
        )
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    local_wall = min(r["wall_s"] for r in local_runs)
    n = len(dataset)
    # per image after the first result: local's first batch holds batch_size images, Ray's first
    # block batches_per_block times that
    local_after = min(r["after_first_batch_s"] for r in local_runs) / (n - args.batch_size)
    result.update(identical_stores=identical, local_runs=local_runs, local_wall_s=local_wall)
    for k, runs in ray_runs.items():
        wall = min(r["wall_s"] for r in runs)
        after = min(r["after_first_batch_s"] for r in runs) / (n - k * args.batch_size)
        result[f"ray_batches_per_block_{k}"] = {
            "runs": runs,
            "wall_s": wall,
            "startup_s": min(r["first_batch_s"] for r in runs),
            "ratio_as_run": round(wall / local_wall, 3),
            "ratio_per_image_after_first_batch": round(after / local_after, 3),
            "peak_pss_mb": max(r["peak_pss_mb"] for r in runs),
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
