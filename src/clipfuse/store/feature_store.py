"""The feature store: a directory of entries keyed by (dataset view, backbone), plus small caches.

Layout of ``root``::

    store.json                               format name and version
    views/<view>/<backbone>/                 one entry (see :mod:`clipfuse.store.entry`)
    locks/<name>.lock                        inter-process locks (content: holder pid@host)
    <namespace>/<name>.safetensors (+.json)  small array sets, e.g. zero-shot text classifiers
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from safetensors import SafetensorError, safe_open

from clipfuse.errors import StoreError
from clipfuse.paths import ensure_store_dir
from clipfuse.store.atomic import atomic_write_bytes, atomic_write_json
from clipfuse.store.entry import FORMAT_VERSION, StoreEntry
from clipfuse.store.keys import EntryKey, check_slug
from clipfuse.store.locking import store_lock
from clipfuse.store.provenance import normalise
from clipfuse.store.safetensors_mmap import METADATA_KEY, encode

STORE_FORMAT = "clipfuse-feature-store"
ARRAY_SET_FORMAT = "clipfuse-array-set"
_RESERVED = {"views", "locks", "store.json"}


class ArraySet(NamedTuple):
    """A cached group of arrays with its JSON metadata (unpacks as ``arrays, metadata``)."""

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


class FeatureStore:
    """Root of a feature store; creating one makes the directory and its ``store.json``."""

    def __init__(self, root: str | Path, *, lock_timeout: float = 120.0) -> None:
        self.root = Path(root).expanduser()
        self.lock_timeout = float(lock_timeout)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"feature store root {self.root} exists and is not a directory")
        ensure_store_dir(self.root)
        marker = self.root / "store.json"
        expected = {"format": STORE_FORMAT, "version": FORMAT_VERSION}
        if marker.is_file():
            try:
                found = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise StoreError(f"corrupt {marker}: {exc}") from exc
            if {k: found.get(k) for k in expected} != expected:
                raise StoreError(
                    f"{self.root} holds a {found.get('format')!r} v{found.get('version')} store; "
                    f"this clipfuse reads {STORE_FORMAT} v{FORMAT_VERSION}"
                )
        else:  # concurrent creators write identical bytes, so the race is harmless
            try:
                atomic_write_json(marker, expected)
            except OSError as exc:
                raise StoreError(
                    f"cannot write to feature store {str(self.root)!r}: {exc.strerror or exc}"
                ) from None

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    # -- entries --------------------------------------------------------------------------------

    def entry(self, key: EntryKey) -> StoreEntry:
        """Handle on the entry for ``key`` (nothing is written until ``begin``)."""
        if not isinstance(key, EntryKey):
            raise TypeError(f"expected an EntryKey, got {type(key).__name__}")
        return StoreEntry(self.root, key, self.lock_timeout)

    def entries(self, view_prefix: str | None = None) -> list[EntryKey]:
        """Keys of all begun entries (complete or not), sorted; optionally only views starting so."""
        keys = []
        for manifest in (self.root / "views").glob("*/*/manifest.json"):
            view, backbone = manifest.parent.parent.name, manifest.parent.name
            if view_prefix is not None and not view.startswith(view_prefix):
                continue
            try:
                keys.append(EntryKey(view=view, backbone=backbone))
            except ValueError:  # a directory the store did not make
                continue
        return sorted(keys)

    def views(self) -> list[str]:
        """Dataset views that have at least one entry, sorted."""
        return sorted({key.view for key in self.entries()})

    def manifest(self, key: EntryKey) -> dict[str, Any]:
        """The manifest of an entry; ``StoreError`` if it does not exist."""
        return self.entry(key).manifest()

    def lock(self, name: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """Inter-process lock ``root/locks/<name>.lock``, reentrant within a thread.

        Raises ``StoreError`` naming the holder's pid if not acquired within ``timeout`` seconds
        (default: the store's ``lock_timeout``).
        """
        return store_lock(self.root, name, self.lock_timeout if timeout is None else timeout)

    # -- array sets -----------------------------------------------------------------------------

    def _array_set_path(self, namespace: str, name: str) -> Path:
        check_slug(namespace, "namespace")
        check_slug(name, "array set name")
        if namespace in _RESERVED:
            raise ValueError(f"namespace {namespace!r} is reserved by the store")
        return self.root / namespace / f"{name}.safetensors"

    def put_array_set(
        self,
        namespace: str,
        name: str,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
    ) -> Path:
        """Atomically store named arrays and JSON metadata at ``root/<namespace>/<name>.safetensors``.

        The metadata lives in the safetensors header (the commit point); ``<name>.json`` beside it
        is a human-readable copy written afterwards.
        """
        path = self._array_set_path(namespace, name)
        meta = normalise(dict(metadata))
        converted = {str(k): np.asarray(v) for k, v in arrays.items()}
        payload = encode(converted, {"format": ARRAY_SET_FORMAT, "metadata": meta})
        atomic_write_bytes(path, payload)
        atomic_write_json(path.with_suffix(".json"), meta)
        return path

    def get_array_set(self, namespace: str, name: str) -> ArraySet | None:
        """The arrays (writeable copies) and metadata stored under ``namespace/name``, or ``None``."""
        path = self._array_set_path(namespace, name)
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="numpy") as f:
                header = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
                arrays = {key: f.get_tensor(key) for key in f.keys()}
        except (OSError, ValueError, SafetensorError) as exc:
            raise StoreError(f"cannot read array set {path}: {exc}") from exc
        if header.get("format") != ARRAY_SET_FORMAT:
            raise StoreError(f"{path} is not a clipfuse array set")
        return ArraySet(arrays=arrays, metadata=header["metadata"])
