"""What every benchmark figure is recorded with: the machine, its load, its matmul ceiling and
the memory a run used. Shared by the extraction benchmarks; no clipfuse imports."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

BUSY_MARKER = "clipfuse.zoo.train"  # the background job the figures must not share the CPU with


def cpu_model() -> str:
    """CPU model name as /proc/cpuinfo gives it (the platform's name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str = "cpu") -> dict:
    """Machine, software and load, to print next to every figure."""
    info = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def matmul_gflops(
    device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 8
) -> dict:
    """Measured n x n x n matrix-multiply rate, GFLOP/s (2 n^3 FLOPs per product): the physical
    limit a compute-bound encoder can approach with the current thread count. Best and median."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    rates = []
    for rep in range(reps + 2):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        if rep >= 2:  # two warm-up products
            rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return {"best": max(rates), "median": statistics.median(rates), "n": n, "reps": reps}


def onednn_matmul_gflops(n: int = 2048, reps: int = 8) -> float:
    """The same fp32 product through oneDNN's inner product (the op clipfuse's CPU linear layers
    and convolutions use), dense operands, best of `reps`. oneDNN uses the CPU's widest vector
    units; MKL's sgemm behind torch.mm may not (on AMD CPUs it runs AVX2 kernels), so this can
    be twice `matmul_gflops`: it is the machine's real float32 ceiling then."""
    if not torch.backends.mkldnn.is_available():
        return float("nan")
    a, w = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    with torch.inference_mode():
        for rep in range(reps + 2):
            start = time.perf_counter()
            torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
            if rep >= 2:  # two warm-up products
                best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def sync(device: str | torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (forked workers share the models) counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


class PeakMemory:
    """Peak total PSS of this process and its children (DataLoader workers), sampled every
    `interval` seconds in a thread; reading smaps costs CPU, so the interval stays long."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        pids = [os.getpid(), *_descendants(os.getpid())]
        self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_gib(self) -> float:
        return self.peak_kib / 1024**2


def max_rss_gib() -> float:
    """Peak resident memory of this process so far (kernel-tracked, exact), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def busy_processes(marker: str = BUSY_MARKER) -> list[int]:
    """Pids whose command line contains `marker` (not this process)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and int(proc.name) != os.getpid():
            pids.append(int(proc.name))
    return pids


def wait_until_quiet(max_load: float = 1.0, give_up_s: float = 45 * 60, poll_s: float = 60) -> bool:
    """Sleep until no background training runs and the 1-minute load is below `max_load`.
    Returns False (the figures are then taken under load, and say so) after `give_up_s`."""
    deadline = time.monotonic() + give_up_s
    while busy_processes() or os.getloadavg()[0] >= max_load:
        if time.monotonic() > deadline:
            return False
        print(
            f"waiting for a quiet machine: load {os.getloadavg()[0]:.2f}, "
            f"{len(busy_processes())} training process(es)",
            flush=True,
        )
        time.sleep(poll_s)
    return True
