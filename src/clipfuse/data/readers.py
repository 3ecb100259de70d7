"""Random-access readers of encoded image bytes: plain files, tar archives, IDX arrays.

Readers are small picklable objects (paths and offsets, no open handles), so DataLoader workers
can each open their own file handles; a .tar.gz is decompressed once into a cache next to the
hash cache, because gzip has no random access.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from clipfuse.errors import DataError
from clipfuse.hashing import CACHE_ROOT, read_memo, write_memo

CACHE_DIR = CACHE_ROOT
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def plain_tar(path: Path) -> Path:
    """A seekable plain .tar for `path`: itself, or a once-made decompressed copy of a .tar.gz."""
    if not str(path).endswith((".tar.gz", ".tgz")):
        return path
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[
        :16
    ]
    target = CACHE_DIR / "untar" / f"{path.name.split('.')[0]}-{key}.tar"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, target)
    return target


def index_tar(path: Path) -> dict[str, tuple[int, int]]:
    """Member name -> (data offset, size) for every regular file in a plain tar.

    Walking a 60,000-member tar takes seconds, so the index is memoised as JSON in the cache,
    keyed by the archive's path, size and mtime (a changed archive gets a new index).
    """
    try:
        st = path.stat()
        key = hashlib.sha256(
            f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
        ).hexdigest()[:16]
        memo = CACHE_DIR / "tar-index" / f"{key}.json"
        cached = read_memo(memo)
        if isinstance(cached, dict):
            return {k: (v[0], v[1]) for k, v in cached.items()}
        with tarfile.open(path, "r:") as tar:
            index = {m.name.lstrip("./"): (m.offset_data, m.size) for m in tar if m.isfile()}
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"cannot read tar archive {str(path)!r}: {exc}") from None
    write_memo(memo, index)
    return index


@dataclass
class FileReader:
    """Bytes of image i from a list of file paths."""

    paths: list[str]

    def read(self, i: int) -> bytes:
        with open(self.paths[i], "rb") as f:
            return f.read()


@dataclass
class TarReader:
    """Bytes of image i from (archive, offset, size) triples; handles are opened per process."""

    archives: list[str]
    locations: list[tuple[int, int, int]]  # (archive index, offset, size)
    _handles: dict[int, object] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self):
        return {"archives": self.archives, "locations": self.locations}

    def __setstate__(self, state):
        self.archives, self.locations, self._handles = state["archives"], state["locations"], {}

    def read(self, i: int) -> bytes:
        archive, offset, size = self.locations[i]
        handle = self._handles.get(archive)
        if handle is None:
            handle = self._handles[archive] = open(self.archives[archive], "rb")
        handle.seek(offset)
        return handle.read(size)


@dataclass
class ArrayReader:
    """Images stored as a uint8 array (IDX files): 'decoding' is a PIL view of row i."""

    images: np.ndarray  # (N, H, W) or (N, H, W, 3) uint8

    def read(self, i: int) -> np.ndarray:
        return self.images[i]


def decode(payload: bytes | np.ndarray) -> Image.Image:
    """Decode bytes (or an array row) into an RGB PIL image; raises on corrupt data."""
    if isinstance(payload, np.ndarray):
        return Image.fromarray(payload).convert("RGB")
    image = Image.open(io.BytesIO(payload))
    image.load()
    return image.convert("RGB")


def read_idx(path: Path) -> np.ndarray:
    """An MNIST-format IDX file (optionally gzipped) as a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {str(path)!r}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    start = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - start != expected:
        raise DataError(
            f"IDX file {str(path)!r} is truncated ({len(data) - start} of {expected} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)
