"""One store entry: the features of one dataset view under one backbone, as independent shards.

Layout of ``root/views/<view>/<backbone>/``::

    manifest.json               provenance, num_samples, shard_size, created, library versions
                                (+ "summary" once finalized)
    shard-00000.safetensors     features (n, D) float16, indices (n,) int64, labels (n,) int64;
    shard-00001.safetensors     metadata: sample_ids and decode failures (JSON)
    .<pid>.<host>.<rand>.shard-00002.safetensors.tmp   a write in progress (never read)

Shard ``i`` covers positions ``[i * shard_size, min((i + 1) * shard_size, num_samples))`` of the
dataset view. A shard file exists only once it is complete (it is renamed into place), so "which
shards are missing" is a directory listing, a killed run resumes by writing the missing ones, and a
worker needs nothing but ``(root, key, i)`` to produce shard ``i``.

On an object store (:class:`clipfuse.store.files.RemoteFiles`) the same layout holds, without temp
files, plus ``shard-XXXXX.safetensors.commit`` beside each committed shard: there "written" means
"has a commit marker", and a shard is written in two steps, ``stage_shard`` (any process: the
upload) then ``commit_shard`` (the committer: the marker). ``write_shard`` does both.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from clipfuse.errors import ProvenanceMismatchError, StoreError
from clipfuse.hashing import installed_versions
from clipfuse.store.atomic import fsync_dir, remove_stale_temps
from clipfuse.store.files import LocalFiles, RemoteFiles
from clipfuse.store.keys import EntryKey
from clipfuse.store.provenance import first_difference, normalise
from clipfuse.store.safetensors_mmap import (
    encode,
    header_metadata,
    parse_header,
    read_mmap,
    read_ranged,
    tensor_layout,
)

ENTRY_FORMAT = "clipfuse-entry"
SHARD_FORMAT = "clipfuse-shard"
FORMAT_VERSION = 1
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.safetensors$")
_COMMIT_RE = re.compile(r"^shard-(\d{5,})\.safetensors\.commit$")
COMMIT_SUFFIX = ".commit"
_VERSIONED_PACKAGES = ("clipfuse", "numpy", "safetensors", "torch", "open_clip_torch")


FEATURE_DTYPES = ("float16", "float32")


def shard_name(i: int) -> str:
    """File name of shard ``i``."""
    return f"shard-{i:05d}.safetensors"


def json_bytes(obj: Any) -> bytes:
    """Indented, key-sorted JSON (stable bytes for equal objects), as manifests are written."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class ShardReceipt:
    """What a writer hands the committer for one staged shard: which, how big, which bytes."""

    shard: int
    size: int
    sha256: str
    rows: int
    failures: int


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class EntryData:
    """The rows of an entry (or of one shard), in increasing view position.

    ``features`` is ``(n, D)`` float16, ``indices`` are positions in the dataset view, ``labels``
    int64 class indices, ``sample_ids`` one string per row; ``failures`` lists the positions whose
    image could not be decoded, as ``{"index", "sample_id", "error"}`` dicts. Arrays are read-only.
    """

    features: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    sample_ids: list[str]
    failures: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[EntryData], where: str) -> EntryData:
        """One ``EntryData`` holding ``parts`` in order: a read-only copy built from their memmaps."""
        dims = {p.features.shape[1] for p in parts if len(p)}
        if len(dims) > 1:
            raise StoreError(f"{where}: shards have different feature sizes {sorted(dims)}")
        dim = dims.pop() if dims else 0
        filled = [p for p in parts if len(p)]

        def cat(arrays: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
            out = np.concatenate(arrays) if arrays else empty
            out.flags.writeable = False
            return out

        return EntryData(
            features=cat([p.features for p in filled], np.empty((0, dim), np.float16)),
            indices=cat([p.indices for p in filled], np.empty(0, np.int64)),
            labels=cat([p.labels for p in filled], np.empty(0, np.int64)),
            sample_ids=[s for p in parts for s in p.sample_ids],
            failures=[f for p in parts for f in p.failures],
        )


def _int_arg(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _int64_vector(values: Any, name: str, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        array = array.astype(np.int64).reshape(0)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got {array.dtype} {array.shape}")
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} rows but features have {n}")
    return array.astype(np.int64)


def _failure(record: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {
            "index": int(record["index"]),
            "sample_id": str(record["sample_id"]),
            "error": str(record["error"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"a failure must be a dict with index, sample_id and error, got {record!r}"
        ) from exc


class StoreEntry:
    """Handle on one entry directory; cheap to create, safe to use from many processes at once."""

    def __init__(self, files: LocalFiles | RemoteFiles, key: EntryKey, lock_timeout: float) -> None:
        self.files = files
        self.root = files.root
        self.key = key
        self.rel = f"views/{key.view}/{key.backbone}"
        self.path = files.full(self.rel)
        self.lock_timeout = lock_timeout
        self._layout_cache: tuple[int, int] | None = None
        self._dtype_cache: str | None = None

    def __repr__(self) -> str:
        return f"StoreEntry({str(self.key)!r}, root={self.files.url!r})"

    # -- manifest -------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path | str:
        return self.files.full(self._manifest_rel)

    @property
    def _manifest_rel(self) -> str:
        return f"{self.rel}/manifest.json"

    def exists(self) -> bool:
        """True once ``begin`` has written the manifest."""
        return self.files.is_file(self._manifest_rel)

    def lock(self) -> AbstractContextManager[None]:
        """The inter-process lock guarding this entry's manifest."""
        digest = hashlib.sha1(str(self.key).encode()).hexdigest()[:8]  # keeps long keys unique
        name = f"entry.{self.key.view[:80]}.{self.key.backbone[:80]}.{digest}"
        return self.files.lock(name, self.lock_timeout)

    def manifest(self) -> dict[str, Any]:
        """The manifest as on disk now; ``StoreError`` if the entry was never begun."""
        try:
            text = self.files.read_bytes(self._manifest_rel).decode("utf-8")
        except FileNotFoundError:
            raise StoreError(
                f"store entry {self.key} does not exist in {self.files.url}; run extract"
            ) from None
        try:
            manifest = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"corrupt manifest {self.manifest_path}: {exc}") from exc
        if manifest.get("format") != ENTRY_FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise StoreError(
                f"{self.manifest_path} has format {manifest.get('format')!r} "
                f"v{manifest.get('version')}; this clipfuse reads {ENTRY_FORMAT} v{FORMAT_VERSION}"
            )
        return manifest

    def _layout(self) -> tuple[int, int]:
        """``(num_samples, shard_size)``: immutable once the manifest exists, so cached."""
        if self._layout_cache is None:
            manifest = self.manifest()
            self._layout_cache = (int(manifest["num_samples"]), int(manifest["shard_size"]))
        return self._layout_cache

    @property
    def feature_dtype(self) -> str:
        """Storage dtype of features: "float16" (default) or "float32" (exact parity checks)."""
        if self._dtype_cache is None:
            self._dtype_cache = str(self.manifest().get("feature_dtype", "float16"))
        return self._dtype_cache

    def begin(
        self,
        provenance: Mapping[str, Any],
        num_samples: int,
        shard_size: int,
        feature_dtype: str = "float16",
    ) -> dict[str, Any]:
        """Create the entry, or check that an existing one was made the same way; returns the manifest.

        The first caller writes ``manifest.json``; every later caller (other runs, other processes)
        must pass equal provenance, ``num_samples`` and ``shard_size`` or gets a
        ``ProvenanceMismatchError`` naming the first differing field: features are never silently
        reused across different weights, preprocessing or data.
        """
        if not isinstance(provenance, Mapping):
            raise ValueError(f"provenance must be a dict, got {type(provenance).__name__}")
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}"
            )
        given = {
            "num_samples": _int_arg(num_samples, "num_samples", 0),
            "shard_size": _int_arg(shard_size, "shard_size", 1),
            "feature_dtype": feature_dtype,
            "provenance": normalise(dict(provenance)),
        }
        with self.lock():
            if self.exists():
                manifest = self.manifest()
                for name, value in given.items():
                    diff = first_difference(manifest.get(name), value, name)
                    if diff is not None:
                        where, old, new = diff
                        raise ProvenanceMismatchError(
                            f"store entry {self.key} was extracted with a different {where} "
                            f"(stored {old}, now {new}); delete {self.path} to re-extract"
                        )
            else:
                manifest = {
                    "format": ENTRY_FORMAT,
                    "version": FORMAT_VERSION,
                    "view": self.key.view,
                    "backbone": self.key.backbone,
                    **given,
                    "num_shards": -(-given["num_samples"] // given["shard_size"]),
                    "created": _utc_now(),
                    "created_by": {"host": platform.node(), "pid": os.getpid()},
                    "library_versions": {
                        "python": platform.python_version(),
                        **installed_versions(_VERSIONED_PACKAGES),
                    },
                }
                self.files.write(self._manifest_rel, json_bytes(manifest))
                if not self.files.remote:
                    fsync_dir(self.path.parent)
        self._layout_cache = (given["num_samples"], given["shard_size"])
        self._dtype_cache = feature_dtype
        self.clean_temp_files()
        return manifest

    # -- shards ---------------------------------------------------------------------------------

    @property
    def num_shards(self) -> int:
        num_samples, shard_size = self._layout()
        return -(-num_samples // shard_size)

    def shard_range(self, i: int) -> tuple[int, int]:
        """``(start, stop)`` positions in the dataset view covered by shard ``i``."""
        num_samples, shard_size = self._layout()
        if isinstance(i, bool) or not 0 <= i < self.num_shards:
            raise IndexError(
                f"shard {i!r} out of range for entry {self.key} ({self.num_shards} shards)"
            )
        return i * shard_size, min((i + 1) * shard_size, num_samples)

    def shard_path(self, i: int) -> Path | str:
        return self.files.full(self._shard_rel(i))

    def _shard_rel(self, i: int) -> str:
        return f"{self.rel}/{shard_name(i)}"

    def written_shards(self) -> list[int]:
        """Indices of committed shards: one listing (local: shard files, never temp files;
        object store: commit markers, never uploads not yet committed)."""
        pattern = _COMMIT_RE if self.files.remote else _SHARD_RE
        names = self.files.listdir(self.rel)
        return sorted(int(m[1]) for m in map(pattern.match, names) if m is not None)

    def missing_shards(self) -> list[int]:
        """Shards not yet written; empty means a rerun has nothing to do."""
        done = set(self.written_shards())
        return [i for i in range(self.num_shards) if i not in done]

    def is_complete(self) -> bool:
        return self.exists() and not self.missing_shards()

    def shard_bytes(
        self,
        i: int,
        features: np.ndarray,
        indices: np.ndarray,
        labels: np.ndarray,
        sample_ids: Sequence[str],
        failures: Iterable[Mapping[str, Any]] = (),
    ) -> bytes:
        """The file bytes of shard ``i`` (deterministic: equal rows give equal bytes).

        Every position of the shard's range must appear exactly once, either as a row (``indices``)
        or in ``failures``. Rows are stored sorted by position, features as float16. Needs only the
        manifest on disk, so any process can write any shard.
        """
        start, stop = self.shard_range(i)
        feats = np.asarray(features)
        if feats.size == 0:
            feats = feats.reshape(0, feats.shape[-1] if feats.ndim == 2 else 0)
        if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
            raise ValueError(f"features must be a 2-D float array, got {feats.dtype} {feats.shape}")
        with np.errstate(over="ignore"):  # overflow becomes inf, rejected just below
            halves = feats.astype(self.feature_dtype)
        if not np.isfinite(halves).all():
            raise ValueError(
                f"shard {i}: features are NaN/inf or exceed the {self.feature_dtype} range"
            )
        n = halves.shape[0]
        idx = _int64_vector(indices, "indices", n)
        lab = _int64_vector(labels, "labels", n)
        ids = [str(s) for s in sample_ids]
        if len(ids) != n:
            raise ValueError(f"sample_ids has {len(ids)} entries but features have {n} rows")
        fails = sorted((_failure(f) for f in failures), key=lambda f: f["index"])
        covered = np.sort(np.concatenate([idx, np.array([f["index"] for f in fails], np.int64)]))
        if not np.array_equal(covered, np.arange(start, stop)):
            raise ValueError(
                f"shard {i} must cover positions [{start}, {stop}) exactly once, "
                f"by indices or failures ({n} rows + {len(fails)} failures given)"
            )
        order = np.argsort(idx, kind="stable")
        return encode(
            {"features": halves[order], "indices": idx[order], "labels": lab[order]},
            {
                "format": SHARD_FORMAT,
                "version": FORMAT_VERSION,
                "shard": int(i),
                "start": start,
                "stop": stop,
                "sample_ids": [ids[j] for j in order],
                "failures": fails,
            },
        )

    def write_shard(self, i: int, *args: Any, **kwargs: Any) -> Path | str:
        """Write and commit shard ``i`` (overwriting an existing one with the new content); takes
        ``shard_bytes``'s arguments. Needs only the manifest, so any process can write any shard."""
        self.commit_shard(self.stage_shard(i, *args, **kwargs))
        return self.shard_path(i)

    def stage_shard(
        self,
        i: int,
        features: np.ndarray,
        indices: np.ndarray,
        labels: np.ndarray,
        sample_ids: Sequence[str],
        failures: Iterable[Mapping[str, Any]] = (),
    ) -> ShardReceipt:
        """Write shard ``i``'s bytes (local: atomically, which also commits it; object store: one
        upload that stays invisible until ``commit_shard``) and return its receipt."""
        fails = list(failures)
        payload = self.shard_bytes(i, features, indices, labels, sample_ids, fails)
        if not self._holds(i, payload):  # a retried block finds its shard already written
            self.files.write(self._shard_rel(i), payload)
        return ShardReceipt(
            shard=int(i),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            rows=int(np.asarray(indices).shape[0]),
            failures=len(fails),
        )

    def _holds(self, i: int, payload: bytes) -> bool:
        """True if shard ``i``'s file already has exactly these bytes (local folders only: there
        a file exists only complete; an object store is simply written again)."""
        if self.files.remote:
            return False
        try:
            return self.files.read_bytes(self._shard_rel(i)) == payload
        except OSError:
            return False

    def commit_shard(self, receipt: ShardReceipt) -> None:
        """Make a staged shard visible: on an object store, write its commit marker (the
        manifest entry of that shard); locally the rename in ``stage_shard`` was the commit."""
        if self.files.remote:
            marker = {"shard": receipt.shard, "size": receipt.size, "sha256": receipt.sha256}
            self.files.write(self._shard_rel(receipt.shard) + COMMIT_SUFFIX, json_bytes(marker))

    def _read_commit(self, i: int) -> dict[str, Any]:
        try:
            return json.loads(self.files.read_bytes(self._shard_rel(i) + COMMIT_SUFFIX))
        except FileNotFoundError:
            raise StoreError(
                f"shard {i} of store entry {self.key} is not written yet; run extract"
            ) from None
        except ValueError as exc:
            raise StoreError(f"corrupt commit marker of shard {i} of {self.key}: {exc}") from exc

    def _remote_reader(self, i: int) -> tuple[Any, int, str]:
        """``(read(start, end), size, name)`` of a committed remote shard, checked against its
        marker (a shard overwritten with other bytes than committed is refused)."""
        rel = self._shard_rel(i)
        size = self.files.size(rel)
        if size != int(self._read_commit(i)["size"]):
            raise StoreError(
                f"{self.files.full(rel)} differs from its commit marker; re-extract it"
            )
        return (lambda a, b: self.files.read_range(rel, a, b)), size, self.files.full(rel)

    def shard_header(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(tensor shapes, metadata)`` of shard ``i`` from its header alone (two small reads,
        not the features): what ``finalize`` and summaries need."""
        if self.files.remote:
            read, size, where = self._remote_reader(i)
        else:
            path = self.files.path(self._shard_rel(i))
            if not path.is_file():
                raise StoreError(
                    f"shard {i} of store entry {self.key} is not written yet; run extract"
                )
            size, where = path.stat().st_size, str(path)
            read = lambda a, b: self.files.read_range(self._shard_rel(i), a, b)  # noqa: E731
        header, start = parse_header(read, size, where)
        shapes = {
            n: shape for n, (_, shape, _, _) in tensor_layout(header, start, size, where).items()
        }
        return shapes, header_metadata(header)

    def read_shard(self, i: int) -> EntryData:
        """Shard ``i`` with zero-copy, read-only ``np.memmap`` arrays (object store: read-only
        arrays from one ranged read of the tensor bytes)."""
        start, stop = self.shard_range(i)
        path = self.shard_path(i)
        if self.files.remote:
            arrays, meta = read_ranged(*self._remote_reader(i))
        else:
            if not path.is_file():
                raise StoreError(
                    f"shard {i} of store entry {self.key} is not written yet; run extract"
                )
            arrays, meta = read_mmap(path)
        if meta.get("format") != SHARD_FORMAT or (meta.get("start"), meta.get("stop")) != (
            start,
            stop,
        ):
            raise StoreError(f"{path} does not hold positions [{start}, {stop}) of {self.key}")
        data = EntryData(
            features=arrays["features"],
            indices=arrays["indices"],
            labels=arrays["labels"],
            sample_ids=list(meta["sample_ids"]),
            failures=list(meta["failures"]),
        )
        if not len(data) == data.features.shape[0] == data.labels.shape[0] == len(data.sample_ids):
            raise StoreError(f"{path}: features, indices, labels and sample_ids differ in length")
        return data

    def _require_complete(self) -> None:
        missing = self.missing_shards()
        if missing:
            done = self.num_shards - len(missing)
            raise StoreError(
                f"store entry {self.key} has {done}/{self.num_shards} shards; run extract"
            )

    def read(self) -> EntryData:
        """All rows of a complete entry, in view order.

        One shard: its memmaps, zero copy. Several shards: one read-only concatenated copy, filled
        from the shards' memmaps (the float16 features of ImageNet's 50k images at D=1024 are 100 MB).
        Use :meth:`read_shard` to stream shard by shard without the copy.
        """
        self._require_complete()
        parts = [self.read_shard(i) for i in range(self.num_shards)]
        if len(parts) == 1:
            return parts[0]
        return EntryData.concatenate(parts, where=f"store entry {self.key}")

    def finalize(self) -> dict[str, Any]:
        """Record counts and decode failures in the manifest once every shard exists; returns them."""
        with self.lock():
            self._require_complete()
            heads = [self.shard_header(i) for i in range(self.num_shards)]
            rows = [shapes["features"] for shapes, _ in heads]
            failures = [f for _, meta in heads for f in meta["failures"]]
            dims = sorted({shape[1] for shape in rows if shape[0]})
            summary = {
                "num_shards": len(heads),
                "num_features": sum(shape[0] for shape in rows),
                "num_failures": len(failures),
                "feature_dim": dims[0] if len(dims) == 1 else dims,
                "feature_dtype": self.feature_dtype,
                "failures": failures,
            }
            manifest = self.manifest()
            previous = dict(manifest.get("summary", {}))
            previous.pop("finalized", None)
            if previous != summary:
                manifest["summary"] = {**summary, "finalized": _utc_now()}
                self.files.write(self._manifest_rel, json_bytes(manifest))
        self.clean_temp_files()
        return manifest["summary"]

    def clean_temp_files(self) -> list[Path]:
        """Remove temp files of writers that died (killed runs); live writers' files are kept.
        An object store has none: an upload never committed is overwritten by the rerun."""
        return [] if self.files.remote else remove_stale_temps(self.path)
