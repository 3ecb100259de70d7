"""`parquet:DIR_OR_FILE`: image datasets in the Parquet layout Hugging Face `datasets` writes and
the hub hosts (`data/train-00000-of-00003.parquet`, `train/0000.parquet`, or one file).

Each row holds an image column, a struct `{bytes, path}` of the encoded file (or plain binary),
and a label column; class names come from the `huggingface` schema metadata, whose features
record a `ClassLabel`'s names. Nothing is downloaded and no file is read whole: the index reads
only the label column, row group by row group, and the reader decodes one row group of image
bytes at a time, keeping the last one (extraction reads in order, so each group is read once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipfuse.errors import DataError
from clipfuse.hashing import file_sha256, value_hash

LABEL_COLUMNS = ("label", "labels", "fine_label", "class", "target", "cls")
IMAGE_COLUMNS = ("image", "img", "jpg", "png", "webp")


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "parquet: sources need the pyarrow package: pip install 'clipfuse[parquet]'"
        ) from None
    return pq


def split_of(path: Path) -> str:
    """`train-00000-of-00003.parquet` -> train; `train/0000.parquet` -> train; `test.parquet` -> test."""
    head = path.stem.split("-", 1)[0]
    return path.parent.name if head.isdigit() else head


def _features(schema) -> dict[str, Any]:
    """The `datasets` features recorded in the schema metadata ({} when absent or unreadable)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def _is_image_type(arrow_type) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return arrow_type.get_field_index("bytes") >= 0
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def _candidates(schema, features: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(image columns, label columns) that could be meant: the `Image` / `ClassLabel` features
    when recorded, else columns of the usual names (images: any binary or {bytes, path} column)."""
    names = schema.names
    typed = {n: (features.get(n) or {}).get("_type") for n in names}
    images = [n for n in names if typed[n] == "Image"]
    images = images or [
        n for n in IMAGE_COLUMNS if n in names and _is_image_type(schema.field(n).type)
    ]
    images = images or [n for n in names if _is_image_type(schema.field(n).type)]
    labels = [n for n in names if typed[n] == "ClassLabel"]
    labels = labels or [n for n in LABEL_COLUMNS if n in names]
    return images, labels


def _pick(
    kind: str, candidates: list[str], chosen: str | None, names: list[str], where: Path
) -> str:
    """The column the option names, or the only candidate; several candidates and no option is
    an error naming them (taking the first silently gave wrong labels, issue 23)."""
    option = f"--{kind}-column"
    if chosen is not None:
        if chosen not in names:
            raise DataError(
                f"{option} {chosen!r} is not a column of {str(where)!r} (columns: {', '.join(names)})"
            )
        return chosen
    if len(candidates) > 1:
        raise DataError(
            f"{str(where)!r} has several {kind} columns ({', '.join(candidates)}); "
            f"choose one with {option}"
        )
    if not candidates:
        wanted = (
            "a struct {bytes, path} or binary"
            if kind == "image"
            else f"a ClassLabel feature or one of {', '.join(LABEL_COLUMNS)}"
        )
        raise DataError(f"{str(where)!r}: no {kind} column ({wanted}); name it with {option}")
    return candidates[0]


def _columns(
    schema,
    features: dict[str, Any],
    where: Path,
    image_column: str | None = None,
    label_column: str | None = None,
) -> tuple[str, str, bool]:
    """(image column, label column, chosen among several): the latter enters the fingerprint,
    since features and stored labels depend on the columns."""
    images, labels = _candidates(schema, features)
    image = _pick("image", images, image_column, schema.names, where)
    label = _pick("label", labels, label_column, schema.names, where)
    if image == label:
        raise DataError(f"{str(where)!r}: the image and label columns are both {image!r}")
    return image, label, len(images) > 1 or len(labels) > 1


def _split_files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        if split not in ("all", split_of(path)):
            raise DataError(
                f"{str(path)!r} holds split {split_of(path)!r}; use --split {split_of(path)} or all"
            )
        return [path]
    files = sorted(path.rglob("*.parquet"))
    if not files:
        raise DataError(f"no .parquet files in {str(path)!r}")
    chosen = files if split == "all" else [f for f in files if split_of(f) == split]
    if not chosen:
        splits = ", ".join(sorted({split_of(f) for f in files}))
        raise DataError(f"split {split!r} not in {str(path)!r} (splits: {splits}, all)")
    return chosen


def parquet_source(
    path: Path, split: str, image_column: str | None = None, label_column: str | None = None
):
    """(sample ids, labels or label names, reader, class names or None, fingerprint, columns)
    for one split, in the shape of the other source builders (`data.sources`) plus the
    columns used (`{"image": ..., "label": ...}`), so the caller can say which."""
    pq = _pq()
    files = _split_files(path, split)
    root = path if path.is_dir() else path.parent
    ids: list[str] = []
    raw_labels: list[Any] = []
    locations: list[tuple[int, int, int]] = []
    used: tuple[str, str] | None = None
    several = False
    classnames: list[str] | None = None
    for f, file in enumerate(files):
        try:
            parquet = pq.ParquetFile(file)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataError(f"cannot read Parquet file {str(file)!r}: {exc}") from None
        features = _features(parquet.schema_arrow)
        image_col, label_col, several_here = _columns(
            parquet.schema_arrow, features, file, image_column, label_column
        )
        if used not in (None, (image_col, label_col)):
            raise DataError(
                f"{str(file)!r}: image/label columns {image_col!r}/{label_col!r}, "
                f"others {used[0]!r}/{used[1]!r}"
            )
        used, several = (image_col, label_col), several or several_here
        names = (features.get(label_col) or {}).get("names")
        if names and classnames is None:
            classnames = [str(n) for n in names]
        relative = file.relative_to(root) if file != root else Path(file.name)
        row = 0
        for group in range(parquet.num_row_groups):
            labels = parquet.read_row_group(group, columns=[label_col]).column(0).to_pylist()
            for k, label in enumerate(labels):
                ids.append(f"{relative}/{row}")
                raw_labels.append(label)
                locations.append((f, group, k))
                row += 1
    if any(label is None for label in raw_labels):
        raise DataError(f"{str(path)!r}: rows without a label in split {split!r}")
    found = None
    if classnames is not None:
        if not all(isinstance(v, int) and 0 <= v < len(classnames) for v in raw_labels):
            raise DataError(f"{str(path)!r}: labels outside the {len(classnames)} ClassLabel names")
        raw_labels = [classnames[v] for v in raw_labels]
        found = classnames
    elif raw_labels and isinstance(raw_labels[0], str):
        found = sorted(set(raw_labels))
    else:
        raw_labels = np.asarray(raw_labels, dtype=np.int64)
    assert used is not None  # _split_files returns at least one file
    reader = ParquetReader([str(f) for f in files], used[0], locations)
    hashes: list[Any] = [file_sha256(f) for f in files]
    columns = {"image": used[0], "label": used[1]}
    if several:  # unchanged when the columns were the only candidates: existing stores stay valid
        hashes.append(columns)
    return ids, raw_labels, reader, found, value_hash(hashes), columns


@dataclass
class ParquetReader:
    """Encoded bytes of image i from (file, row group, row) locations, one row group in memory.

    Picklable without handles (DataLoader workers reopen their own files)."""

    files: list[str]
    column: str
    locations: list[tuple[int, int, int]]
    _open: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    _group: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    _rows: list[Any] = field(default_factory=list, repr=False, compare=False)

    def __getstate__(self):
        return {"files": self.files, "column": self.column, "locations": self.locations}

    def __setstate__(self, state):
        self.files, self.column, self.locations = (
            state["files"],
            state["column"],
            state["locations"],
        )
        self._open, self._group, self._rows = {}, None, []

    def _row_group(self, f: int, group: int) -> list[Any]:
        if self._group != (f, group):
            parquet = self._open.get(f)
            if parquet is None:
                parquet = self._open[f] = _pq().ParquetFile(self.files[f])
            self._rows = []  # drop the previous group before reading the next
            self._rows = parquet.read_row_group(group, columns=[self.column]).column(0).to_pylist()
            self._group = (f, group)
        return self._rows

    def read(self, i: int) -> bytes:
        f, group, row = self.locations[i]
        value = self._row_group(f, group)[row]
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                return value["bytes"]
            if value.get("path"):  # an image stored by reference, next to the file
                target = Path(self.files[f]).parent / value["path"]
                return target.read_bytes()
            raise DataError(f"row {row} of {self.files[f]!r} has neither image bytes nor a path")
        if value is None:
            raise DataError(f"row {row} of {self.files[f]!r} has no image")
        return value
