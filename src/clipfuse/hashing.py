"""Provenance: content hashes of files (memoised by path, size, mtime) and JSON-able values,
and the versions of installed packages."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CACHE_ROOT = Path(os.environ.get("CLIPFUSE_CACHE", "~/.cache/clipfuse")).expanduser()
_HASH_CACHE = CACHE_ROOT / "hashes.json"


def installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Versions of those of ``packages`` that are installed (read from metadata; nothing is
    imported)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def value_hash(value: Any, length: int = 64) -> str:
    """sha256 of a JSON-serialisable value with sorted keys (stable across runs and machines)."""
    payload = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:length]


def read_memo(path: Path) -> Any:
    """A JSON memo's content, or None when absent or damaged (then it is rebuilt)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def write_memo(path: Path, obj: Any) -> None:
    """Replace a JSON memo in one rename; a memo is an optimisation, so failures are ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, path)
    except OSError:
        pass


_RECORDERS: list[dict[str, str]] = []


@contextmanager
def recorded_hashes() -> Iterator[dict[str, str]]:
    """{path: sha256} of every file hashed inside the block: the files a backbone was built
    from, so a later run can tell they are unchanged without building it again."""
    seen: dict[str, str] = {}
    _RECORDERS.append(seen)
    try:
        yield seen
    finally:
        _RECORDERS.remove(seen)


def file_sha256(path: str | Path) -> str:
    """Content hash of a file, memoised by (path, size, mtime) so reruns cost nothing."""
    path = Path(path).resolve()
    digest = _file_sha256(path)
    for seen in _RECORDERS:
        seen[str(path)] = digest
    return digest


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache: dict[str, str] = read_memo(_HASH_CACHE) or {}
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
        write_memo(_HASH_CACHE, cache)
    return cache[key]
