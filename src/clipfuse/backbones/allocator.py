"""glibc malloc settings for CPU inference: freed activation memory is kept and reused.

Why: glibc's mmap threshold starts at 128 KB and its trim threshold returns freed heap memory
to the kernel, so a forward pass maps fresh pages for its activations in every layer and the
kernel zero-fills them on first touch. On 2 cores that page-fault time was a fifth of a ViT-B/16
forward and of RN50's (BENCHMARKS.md). Fixing the mmap threshold at its maximum (32 MB: encoders
run in chunks whose activations stay below it, see `Backbone.encode_images`) and never trimming
lets the heap keep and reuse those pages, which is what the tcmalloc/jemalloc advice for PyTorch
CPU inference achieves without preloading another allocator.

Process-wide and irreversible for the process, so it is applied once, when a backbone is placed
on a CPU; `CLIPFUSE_CPU_KERNELS=default` keeps glibc's defaults. A no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os

from clipfuse.backbones.cpu_kernels import ENV

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (4 * 1024 * 1024 * sizeof(long))
NEVER_TRIM = 2**31 - 1  # mallopt takes an int

log = logging.getLogger(__name__)


def release_freed_memory() -> bool:
    """Hand free heap pages back to the kernel now (`malloc_trim(0)`), once, after a large free
    that will not be reused soon (a text tower dropped before the next model is built): the
    no-trim setting below would otherwise keep them resident for the rest of the process."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc: nothing to release by hand
        return False


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the settings once per process; True if they are in effect."""
    if os.environ.get(ENV) == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
    )
    log.debug("glibc malloc: mmap threshold 32 MB, no trimming: %s", ok)
    return ok
