"""Extraction speed alone and beside a busy process, per thread setting, side by side (issue 23).

The same extraction (the shipped demo CIFAR-10 train split, 500 images, three zoo backbones,
default decode workers, a fresh store each run) under three thread settings:

  torch default   intra-op threads = torch's own default (every core), what clipfuse used before
  clipfuse default  `threads=None`: the cores this process may use minus the decode workers
  1 thread        `threads=1` (left out where clipfuse's default is 1 already)

each alone and beside a busy process (a child Python process spinning on `--busy` cores, which
stops itself after `--busy-seconds` and is stopped by this script when the runs are done). The
runs are interleaved (setting x condition, `--repeats` rounds) so slow drifts in the machine's
load hit every cell alike; each cell reports the median images/s. The figure of merit is
busy / alone per setting (target: clipfuse's default within 1.5x of its run alone).

    OMP_NUM_THREADS= python benchmarks/bench_threads.py             # 500 images, 3 rounds
    python benchmarks/bench_threads.py --images 200 --repeats 2 --busy 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _machine
import torch

from clipfuse import demo_source
from clipfuse.backbones import load_backbone
from clipfuse.data import open_dataset
from clipfuse.extraction import extract
from clipfuse.extraction.engine import default_workers
from clipfuse.extraction.threads import available_cores, default_threads
from clipfuse.store import FeatureStore

BACKBONES = ("zoo:rn-tiny", "zoo:vit-p4", "zoo:vit-p8")
BURN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def start_busy(cores: int, seconds: float) -> list[subprocess.Popen]:
    """`cores` spinning processes that exit by themselves after `seconds`."""
    code = BURN.format(seconds=seconds)
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(cores)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


def run_once(backbones, dataset, threads: int | None) -> float:
    """Images/s of one extraction into a fresh store."""
    with tempfile.TemporaryDirectory() as root:
        report = extract(backbones, dataset, FeatureStore(root), threads=threads, progress=False)
    return report.images_processed / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="cores the busy process spins on")
    parser.add_argument("--busy-seconds", type=float, default=600.0)
    args = parser.parse_args()

    torch_default = torch.get_num_threads()
    if os.environ.pop("OMP_NUM_THREADS", None) is not None:
        print("note: OMP_NUM_THREADS was set; torch's default below is that value, not every core")
    dataset = open_dataset(demo_source("cifar10"), "train").subset(args.images)
    backbones = [load_backbone(s, image_only=True, with_gflops=False) for s in BACKBONES]
    workers = default_workers(backbones)
    settings = {
        f"torch default ({torch_default})": torch_default,
        f"clipfuse default ({default_threads(workers)})": None,
    }
    if default_threads(workers) != 1:
        settings["1 thread"] = 1
    print(_machine.describe())
    print(
        f"{len(dataset)} images x {len(backbones)} backbones ({', '.join(BACKBONES)}), "
        f"{workers} decode workers, {available_cores()} cores available, busy process on "
        f"{args.busy} core(s); median of {args.repeats} interleaved rounds"
    )
    run_once(backbones, dataset.subset(min(64, len(dataset))), 1)  # warm-up: imports, first loads
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for condition in ("alone", "busy"):
            procs = start_busy(args.busy, args.busy_seconds) if condition == "busy" else []
            try:
                if procs:
                    time.sleep(0.5)  # let the spinners get scheduled
                for name, threads in settings.items():
                    rate = run_once(backbones, dataset, threads)
                    rates.setdefault((name, condition), []).append(rate)
            finally:
                stop_busy(procs)
    torch.set_num_threads(torch_default)
    print(f"{'setting':24s} {'alone img/s':>12s} {'busy img/s':>11s} {'alone/busy':>11s}")
    for name in settings:
        alone = statistics.median(rates[(name, "alone")])
        busy = statistics.median(rates[(name, "busy")])
        print(f"{name:24s} {alone:12.1f} {busy:11.1f} {alone / busy:10.2f}x")
    reference = statistics.median(rates[(next(iter(settings)), "busy")])
    ours = statistics.median(rates[(list(settings)[1], "busy")])
    print(f"beside the busy process, clipfuse default / torch default: {ours / reference:.1f}x")
    print(f"load average after: {_machine.load_average()}")


if __name__ == "__main__":
    main()
