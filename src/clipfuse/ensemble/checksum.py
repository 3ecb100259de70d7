"""A saved ensemble's checksum: sha256 of the file's every byte, carried in its own header.

The file's bytes are made with a placeholder of 64 zeros as the `clipfuse_sha256` metadata
value, their sha256 is written over the placeholder (same length, so no offset moves) and the file
is written once, atomically. To verify, the recorded value is put back to zeros and the file
hashed again. Any edited byte (tensor data, header, metadata, even JSON padding) changes the
hash; a file without the field is refused too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors.torch import save

from clipfuse.errors import ClipfuseError
from clipfuse.store.atomic import atomic_write_bytes

KEY = "clipfuse_sha256"
PLACEHOLDER = "0" * 64
_MARKER = f'"{KEY}":"'.encode()


def _span(data: bytes | bytearray, path: Path) -> tuple[int, int]:
    """Byte range of the recorded checksum inside the safetensors JSON header."""
    if len(data) < 8:
        raise ClipfuseError(f"{str(path)!r} is not a clipfuse ensemble file (too short)")
    size = int.from_bytes(data[:8], "little")
    header = bytes(data[8 : 8 + size]) if size <= len(data) - 8 else b""
    if header.count(_MARKER) != 1:
        raise ClipfuseError(
            f"{str(path)!r} has no clipfuse checksum: not a clipfuse ensemble, one written before "
            "checksums (re-run `clipfuse fit`), or a damaged header"
        )
    start = 8 + header.index(_MARKER) + len(_MARKER)
    return start, start + 64


def save_sealed(tensors: dict, path: str | Path, metadata: dict[str, str]) -> Path:
    """`safetensors.torch.save` plus the checksum, written atomically (what `SavedEnsemble.save`
    writes)."""
    path = Path(path)
    data = bytearray(save(tensors, metadata={**metadata, KEY: PLACEHOLDER}))
    start, end = _span(data, path)
    data[start:end] = hashlib.sha256(data).hexdigest().encode()
    atomic_write_bytes(path, bytes(data))
    return path


def verify(path: str | Path) -> None:
    """Raise ClipfuseError (one line) unless the file's bytes hash to its recorded checksum."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    start, end = _span(data, path)
    recorded = bytes(data[start:end]).decode("ascii", errors="replace")
    data[start:end] = PLACEHOLDER.encode()
    if hashlib.sha256(data).hexdigest() != recorded:
        raise ClipfuseError(
            f"{str(path)!r} fails its sha256 checksum: the file was edited or damaged after "
            "`clipfuse fit` wrote it; refit it rather than trust it"
        )
