"""Inter-process locks (``filelock``) that record who holds them, for a useful timeout message."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from clipfuse.errors import StoreError
from clipfuse.store.keys import check_slug


def _record_holder(fd: int) -> None:
    """filelock ``on_acquired`` hook: write ``pid@host`` into the (held) lock file."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}@{platform.node()}\n".encode())


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    pid, _, host = text.partition("@")
    return f"pid {pid} on {host}" if pid else "unknown"


@contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; reentrant within one thread of one process.

    Raises ``StoreError`` naming the holder if the lock is not acquired within ``timeout`` seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # is_singleton: nested ``with store.lock(name)`` in one thread must not deadlock on itself.
    lock = FileLock(path, is_singleton=True, on_acquired=_record_holder)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise StoreError(
            f"could not acquire lock {path} within {timeout:g}s: held by {_holder(path)}"
        ) from None
    try:
        yield
    finally:
        lock.release()


def store_lock(root: Path, name: str, timeout: float) -> AbstractContextManager[None]:
    """The store's named lock: ``root/locks/<name>.lock``."""
    return file_lock(root / "locks" / f"{check_slug(name, 'lock name')}.lock", timeout)
