"""Crash-safe file writes: a reader sees either the old file or the complete new one, never a part.

Every write goes to a hidden temp file in the destination directory (same filesystem, so the
rename is atomic), is fsynced, renamed over the destination with ``os.replace`` and the directory
is fsynced so the rename itself survives a power cut. A process killed mid-write leaves only a temp
file behind; temp names carry the writer's host and pid so a later run can tell a dead writer's
leftovers from a live writer's file in progress and remove only the former.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

_HOST_TAG = hashlib.sha1(platform.node().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^\.(?P<pid>\d+)\.(?P<host>[0-9a-f]{8})\.[0-9a-f]+\.(?P<final>.+)\.tmp$")


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temp name next to ``path`` that records this writer's pid and host."""
    token = secrets.token_hex(4)
    return path.with_name(f".{os.getpid()}.{_HOST_TAG}.{token}.{path.name}.tmp")


def is_temp_name(name: str) -> bool:
    """True for names made by :func:`temp_path_for` (never a committed file)."""
    return _TEMP_RE.match(name) is not None


def fsync_dir(directory: Path) -> None:
    """Persist a rename or a new entry in ``directory`` (a no-op where directories can't be opened)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is absent/old or complete, whatever kills us."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable bytes for equal objects)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: exists but belongs to someone else
        return True
    return True


def remove_stale_temps(directory: Path, max_age_s: float = 24 * 3600.0) -> list[Path]:
    """Delete temp files left by dead writers: this host's dead pids, or any older than ``max_age_s``.

    Live writers' temp files are kept (deleting one would make its ``os.replace`` fail). Returns the
    removed paths.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    now = time.time()
    for item in os.scandir(directory):
        match = _TEMP_RE.match(item.name)
        if match is None or not item.is_file(follow_symlinks=False):
            continue
        dead_here = match["host"] == _HOST_TAG and not _pid_alive(int(match["pid"]))
        try:
            too_old = now - item.stat(follow_symlinks=False).st_mtime > max_age_s
        except FileNotFoundError:
            continue
        if dead_here or too_old:
            with suppress(FileNotFoundError):
                os.unlink(item.path)
                removed.append(Path(item.path))
    return removed
