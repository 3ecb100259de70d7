"""How many CPU threads the encoders use during extraction, so a shared machine does not collapse.

torch's default intra-op thread count is every core. During extraction the decode workers (one
process each) want cores too, and anything else running on the machine wants more: with more
busy threads than cores, OpenMP's threads spin at each barrier waiting for a descheduled peer,
and a light encoder (many short parallel regions) slows down by an order of magnitude (500
images x 3 zoo backbones beside one busy process: 39.6 s with torch's default, 2.7 s with one
thread; issue 23). The default here leaves one core per decode worker: intra-op threads = the
cores this process may use (its CPU affinity, not the machine's count) minus the workers, at
least 1. `OMP_NUM_THREADS`, when set, is the user's choice and is kept; `threads=` overrides both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from clipfuse.errors import ClipfuseError


def available_cores() -> int:
    """CPUs this process may run on (affinity / cgroup-aware where Python says so)."""
    counter = getattr(os, "process_cpu_count", None)  # Python >= 3.13
    if counter is not None:
        return max(1, counter() or 1)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads(num_workers: int) -> int:
    """Intra-op threads when none are asked for: `OMP_NUM_THREADS` if the user set it, else one
    core per decode worker left free and the rest for the encoders (at least 1)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cores() - max(0, num_workers))


@contextmanager
def compute_threads(threads: int | None, num_workers: int) -> Iterator[int]:
    """Run the block with `threads` intra-op threads (default: `default_threads`), restoring the
    caller's count afterwards; yields the count used."""
    count = default_threads(num_workers) if threads is None else int(threads)
    if count < 1:
        raise ClipfuseError(f"threads must be a positive integer, got {count}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)
