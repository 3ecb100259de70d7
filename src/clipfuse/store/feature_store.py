"""The feature store: a directory of entries keyed by (dataset view, backbone), plus small caches.

Layout of ``root``::

    store.json                               format name and version
    views/<view>/<backbone>/                 one entry (see :mod:`clipfuse.store.entry`)
    locks/<name>.lock                        inter-process locks (content: holder pid@host)
    <namespace>/<name>.safetensors (+.json)  small array sets, e.g. zero-shot text classifiers

``root`` is a path, ``file://PATH`` or an fsspec URL (``s3://bucket/prefix``, ``gs://...``): see
:mod:`clipfuse.store.files` for how each commits a write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load

from clipfuse.errors import StoreError
from clipfuse.paths import ensure_dir
from clipfuse.store.entry import FORMAT_VERSION, StoreEntry, json_bytes
from clipfuse.store.files import open_files
from clipfuse.store.keys import EntryKey, check_slug
from clipfuse.store.provenance import normalise
from clipfuse.store.safetensors_mmap import encode, header_metadata, parse_header

STORE_FORMAT = "clipfuse-feature-store"
ARRAY_SET_FORMAT = "clipfuse-array-set"
_RESERVED = {"views", "locks", "store.json"}


class ArraySet(NamedTuple):
    """A cached group of arrays with its JSON metadata (unpacks as ``arrays, metadata``)."""

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


class FeatureStore:
    """Root of a feature store; creating one makes the directory (or prefix) and its ``store.json``.

    Opening checks the location at once (a missing bucket, denied credentials, an unreachable
    endpoint or a URL scheme without its filesystem fail here with one line, before any work).
    """

    def __init__(self, root: str | Path, *, lock_timeout: float = 120.0) -> None:
        self.files = open_files(root)
        self.root: Path | str = self.files.root if not self.files.remote else self.files.url
        self.url = self.files.url
        self.lock_timeout = float(lock_timeout)
        if not self.files.remote:
            ensure_dir(self.files.root, "feature store", StoreError)
        expected = {"format": STORE_FORMAT, "version": FORMAT_VERSION}
        try:
            raw = self.files.read_bytes("store.json")
        except FileNotFoundError:
            raw = None
        if raw is not None:
            try:
                found = json.loads(raw)
            except ValueError as exc:
                raise StoreError(f"corrupt {self.url}/store.json: {exc}") from exc
            if {k: found.get(k) for k in expected} != expected:
                raise StoreError(
                    f"{self.root} holds a {found.get('format')!r} v{found.get('version')} store; "
                    f"this clipfuse reads {STORE_FORMAT} v{FORMAT_VERSION}"
                )
        else:  # concurrent creators write identical bytes, so the race is harmless
            try:
                self.files.write("store.json", json_bytes(expected))
            except OSError as exc:
                raise StoreError(
                    f"cannot write to feature store {str(self.root)!r}: {exc.strerror or exc}"
                ) from None

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    def __reduce__(self):  # a worker reopens the store from its location (no open handles)
        return (type(self), (self.url,), {"lock_timeout": self.lock_timeout})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock_timeout = state["lock_timeout"]

    # -- entries --------------------------------------------------------------------------------

    def entry(self, key: EntryKey) -> StoreEntry:
        """Handle on the entry for ``key`` (nothing is written until ``begin``)."""
        if not isinstance(key, EntryKey):
            raise TypeError(f"expected an EntryKey, got {type(key).__name__}")
        return StoreEntry(self.files, key, self.lock_timeout)

    def entries(self, view_prefix: str | None = None) -> list[EntryKey]:
        """Keys of all begun entries (complete or not), sorted; optionally only views starting so."""
        keys = []
        for manifest in self.files.glob("views/*/*/manifest.json"):
            view, backbone = manifest.split("/")[-3:-1]
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
        (default: the store's ``lock_timeout``). On an object store there are no locks (a no-op):
        every write there is of bytes that concurrent writers agree on.
        """
        check_slug(name, "lock name")
        return self.files.lock(name, self.lock_timeout if timeout is None else timeout)

    # -- array sets -----------------------------------------------------------------------------

    def _array_set_rel(self, namespace: str, name: str) -> str:
        check_slug(namespace, "namespace")
        check_slug(name, "array set name")
        if namespace in _RESERVED:
            raise ValueError(f"namespace {namespace!r} is reserved by the store")
        return f"{namespace}/{name}.safetensors"

    def put_array_set(
        self,
        namespace: str,
        name: str,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
    ) -> Path | str:
        """Atomically store named arrays and JSON metadata at ``root/<namespace>/<name>.safetensors``.

        The metadata lives in the safetensors header (the commit point); ``<name>.json`` beside it
        is a human-readable copy written afterwards.
        """
        rel = self._array_set_rel(namespace, name)
        meta = normalise(dict(metadata))
        converted = {str(k): np.asarray(v) for k, v in arrays.items()}
        payload = encode(converted, {"format": ARRAY_SET_FORMAT, "metadata": meta})
        self.files.write(rel, payload)
        self.files.write(rel.removesuffix(".safetensors") + ".json", json_bytes(meta))
        return self.files.full(rel)

    def get_array_set(self, namespace: str, name: str) -> ArraySet | None:
        """The arrays (writeable copies) and metadata stored under ``namespace/name``, or ``None``."""
        rel = self._array_set_rel(namespace, name)
        path = self.files.full(rel)
        try:
            data = self.files.read_bytes(rel)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read array set {path}: {exc}") from exc
        try:
            header = header_metadata(parse_header(lambda a, b: data[a:b], len(data), str(path))[0])
            arrays = {key: np.array(value) for key, value in st_load(data).items()}
        except (ValueError, SafetensorError) as exc:
            raise StoreError(f"cannot read array set {path}: {exc}") from exc
        if header.get("format") != ARRAY_SET_FORMAT:
            raise StoreError(f"{path} is not a clipfuse array set")
        return ArraySet(arrays=arrays, metadata=header["metadata"])
