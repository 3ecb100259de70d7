"""safetensors files with JSON metadata, encoded by the safetensors library and read via ``np.memmap``.

The safetensors format is an 8-byte little-endian header length, a JSON header (dtype, shape and
byte offsets per tensor, plus ``__metadata__``: a str -> str map) and the raw tensor bytes. Reading
the header ourselves lets every tensor become a read-only ``np.memmap`` of the file: nothing is
copied until used, and the OS page cache is shared between processes.

All our metadata lives in one ``__metadata__`` key holding key-sorted JSON, because the library
writes a multi-key metadata map in hash order, which would make identical shards differ in bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as _st_save

from clipfuse.errors import StoreError

METADATA_KEY = "clipfuse"
_MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces

_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}


def encode(arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> bytes:
    """Serialise ``arrays`` and JSON ``metadata`` to safetensors bytes (deterministic for equal input)."""
    contiguous = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    text = json.dumps(metadata, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return _st_save(contiguous, metadata={METADATA_KEY: text})


def parse_header(
    read: Callable[[int, int], bytes], size: int, where: str
) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file of ``size`` bytes and the offset where its tensor data
    starts, through ``read(start, end)``: two small reads, whatever the size of the tensors."""
    try:
        length = int.from_bytes(read(0, 8), "little") if size >= 8 else -1
        if length < 0 or length > min(size - 8, _MAX_HEADER_BYTES):
            raise StoreError(f"{where} is not a valid safetensors file (bad header length)")
        header = json.loads(read(8, 8 + length))
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read safetensors file {where}: {exc}") from exc
    return header, 8 + length


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Return the parsed JSON header and the byte offset where tensor data starts."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:

            def read(start: int, end: int) -> bytes:
                f.seek(start)
                return f.read(end - start)

            return parse_header(read, size, str(path))
    except OSError as exc:
        raise StoreError(f"cannot read safetensors file {path}: {exc}") from exc


def tensor_layout(
    header: dict[str, Any], data_start: int, size: int, where: str
) -> dict[str, tuple[np.dtype, tuple[int, ...], int, int]]:
    """``name -> (dtype, shape, absolute start, absolute end)`` of every tensor, checked against
    the file size (a truncated file fails here, not on first use)."""
    layout = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise StoreError(f"{where}: tensor {name!r} has unsupported dtype {info['dtype']}")
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dtype.itemsize or data_start + end > size:
            raise StoreError(
                f"{where}: tensor {name!r} offsets do not match its shape (truncated?)"
            )
        layout[name] = (dtype, shape, data_start + begin, data_start + end)
    return layout


def header_metadata(header: dict[str, Any]) -> dict[str, Any]:
    """Our JSON metadata from a parsed header (empty if absent)."""
    return json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "{}"))


def read_ranged(
    read: Callable[[int, int], bytes], size: int, where: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every tensor as a read-only array, fetched with one ranged read for the header and one for
    the tensor bytes: for a file on an object store, where memory-mapping is impossible."""
    header, data_start = parse_header(read, size, where)
    layout = tensor_layout(header, data_start, size, where)
    stop = max((end for *_, end in layout.values()), default=data_start)
    data = read(data_start, stop) if stop > data_start else b""
    if len(data) != stop - data_start:
        raise StoreError(f"{where}: short read ({len(data)} of {stop - data_start} bytes)")
    arrays = {}
    for name, (dtype, shape, begin, end) in layout.items():
        array = np.frombuffer(
            data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin - data_start
        )
        arrays[name] = array.reshape(shape)  # frombuffer of bytes: read-only
    return arrays, header_metadata(header)


def read_mmap(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every tensor of ``path`` as a read-only ``np.memmap`` (empty tensors as read-only arrays)."""
    header, data_start = _read_header(path)
    layout = tensor_layout(header, data_start, path.stat().st_size, str(path))
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, shape, begin, end) in layout.items():
        if begin == end:  # mmap cannot map zero bytes
            array = np.empty(shape, dtype=dtype)
            array.flags.writeable = False
        else:
            array = np.memmap(path, dtype=dtype, mode="r", offset=begin, shape=shape)
        arrays[name] = array
    return arrays, header_metadata(header)
