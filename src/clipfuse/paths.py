"""Output folders a user names: created, or one line saying why they cannot be."""

from __future__ import annotations

from pathlib import Path

from clipfuse.errors import ClipfuseError


def ensure_dir(path: str | Path, what: str = "output folder", error=ClipfuseError) -> Path:
    """`path` as a folder (made with its parents); `error` with the reason when that is impossible
    (a file on the way, no permission, a read-only or virtual file system)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise error(f"{what} {str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot create {what} {str(path)!r}: {exc.strerror or exc}") from None
    return path

