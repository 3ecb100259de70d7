"""Where a feature store's bytes live: a local folder, or an fsspec URL (S3, GCS, Azure, ...).

Both give the store the same few operations on paths relative to its root. They differ in how a
file becomes visible:

- ``LocalFiles``: a write goes to a temp file that is fsynced and renamed into place, so a file
  exists only once complete (POSIX); locks are ``filelock`` files.
- ``RemoteFiles``: an object store has no rename. A shard is uploaded as one object (a PUT) and
  *committed* afterwards by a small marker object beside it (``<shard>.commit``, holding its size and
  SHA-256), which only the store's committer writes. Readers and the resume logic list the markers,
  never the shard objects, so an upload cut short or not yet committed is never read. No locks:
  every writer of an entry writes the same bytes, so concurrent writers agree.

Credentials and endpoints come from the filesystem's own environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS`` ...); clipfuse takes none as options and
never prints them. Remote failures become one ``StoreError`` line naming what to set.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from clipfuse.errors import StoreError
from clipfuse.store.atomic import atomic_write_bytes
from clipfuse.store.locking import store_lock

T = TypeVar("T")

# extra to install and the variables that configure each scheme's filesystem
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
    "gcs": "GOOGLE_APPLICATION_CREDENTIALS",
    "azure": "AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT_NAME and _KEY)",
}
_ENDPOINT = {"s3": "AWS_ENDPOINT_URL", "gcs": "STORAGE_EMULATOR_HOST", "azure": "the account URL"}


def scheme_of(location: str | Path) -> str | None:
    """The URL scheme of a store location, or None for a plain path (and ``file://``)."""
    text = str(location)
    if "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    return None if scheme in ("file", "local") else scheme


def open_files(location: str | Path) -> LocalFiles | RemoteFiles:
    """The files of a store at ``location``: a path, ``file://PATH`` or an fsspec URL."""
    text = str(location)
    if scheme_of(text) is None:
        if "://" in text:
            text = text.split("://", 1)[1]
        return LocalFiles(Path(text).expanduser())
    return RemoteFiles(text)


class LocalFiles:
    """A store in a local (or mounted shared) folder: atomic renames, ``filelock`` locks, memmaps."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    full = path  # where ``rel`` is, as a path here and a URL on an object store

    def read_bytes(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def read_range(self, rel: str, start: int, end: int) -> bytes:
        with open(self.path(rel), "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def size(self, rel: str) -> int:
        return self.path(rel).stat().st_size

    def write(self, rel: str, data: bytes) -> None:
        atomic_write_bytes(self.path(rel), data)

    def is_file(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self.path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def glob(self, pattern: str) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.root.glob(pattern)]

    def lock(self, name: str, timeout: float) -> AbstractContextManager[None]:
        return store_lock(self.root, name, timeout)


class RemoteFiles:
    """A store under an fsspec URL; each operation is one or two object-store requests."""

    remote = True

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.scheme = scheme_of(url) or "file"
        self.extra = _EXTRAS.get(self.scheme, self.scheme)
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec comes with the base install
            raise StoreError(
                f'a store at {self.url} needs fsspec: pip install "clipfuse[{self.extra}]"'
            ) from None
        try:
            # listings are not cached: another process may have committed a shard meanwhile
            self.fs, self.root = fsspec.core.url_to_fs(
                self.url, use_listings_cache=False, skip_instance_cache=True
            )
        except ImportError:
            raise StoreError(
                f"no filesystem installed for {self.scheme}:// store URLs: "
                f'pip install "clipfuse[{self.extra}]"'
            ) from None
        except ValueError:
            raise StoreError(
                f"no filesystem known for {self.scheme}:// store URLs (use a path, file://, "
                "s3://, gs:// or another fsspec protocol)"
            ) from None
        self.root = self.root.rstrip("/")
        self.probe_endpoint()

    def probe_endpoint(self) -> None:
        """Fail in seconds on an endpoint that does not answer (AWS_ENDPOINT_URL): the SDK
        itself retries a refused connection with back-off for 10 s or more."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if self.extra != "s3" or not endpoint:
            return
        parsed = urlsplit(endpoint)
        default = 443 if parsed.scheme == "https" else 80
        try:
            socket.create_connection((parsed.hostname or "", parsed.port or default), 5.0).close()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise StoreError(
                f"cannot reach the object store of {self.url} at the endpoint in AWS_ENDPOINT_URL "
                f"({reason}): check AWS_ENDPOINT_URL and the network"
            ) from None

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def read_bytes(self, rel: str) -> bytes:
        return self.call(lambda: self.fs.cat_file(self.full(rel)), missing_ok=True)

    def read_range(self, rel: str, start: int, end: int) -> bytes:
        return self.call(lambda: self.fs.cat_file(self.full(rel), start=start, end=end))

    def size(self, rel: str) -> int:
        return int(self.call(lambda: self.fs.size(self.full(rel))))

    def write(self, rel: str, data: bytes) -> None:
        """One PUT of the whole object: it appears complete or not at all (S3, GCS, Azure)."""
        self.call(lambda: self.fs.pipe_file(self.full(rel), data))

    def is_file(self, rel: str) -> bool:
        return bool(self.call(lambda: self.fs.isfile(self.full(rel))))

    def listdir(self, rel: str) -> list[str]:
        def names() -> list[str]:
            try:
                return [
                    p.rstrip("/").rsplit("/", 1)[-1]
                    for p in self.fs.ls(self.full(rel), detail=False)
                ]
            except FileNotFoundError:
                return []

        return self.call(names)

    def glob(self, pattern: str) -> list[str]:
        prefix = self.root + "/"
        return [p[len(prefix) :] for p in self.call(lambda: self.fs.glob(self.full(pattern)))]

    def lock(self, name: str, timeout: float) -> AbstractContextManager[None]:
        return nullcontext()  # see the module docstring: writers agree byte for byte

    def call(self, operation: Callable[[], T], missing_ok: bool = False) -> T:
        """Run one filesystem operation, turning its failure into one line that says what to set."""
        with self.errors(missing_ok):
            return operation()
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def errors(self, missing_ok: bool = False) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as exc:
            if not self.bucket_exists():
                raise StoreError(self.missing_bucket_message()) from None
            if missing_ok:
                raise
            raise StoreError(
                f"store {self.url}: {_first_line(exc) or 'an object is missing'}"
            ) from None
        except PermissionError:
            raise StoreError(
                f"access to {self.url} denied: set {_CREDENTIALS.get(self.extra, 'the credentials')} "
                "to credentials that may read and write it"
            ) from None
        except StoreError:
            raise
        except Exception as exc:  # botocore/aiohttp/google errors have no common base
            raise StoreError(self.describe(exc)) from None

    def bucket_exists(self) -> bool:
        bucket = self.root.split("/", 1)[0]
        try:
            return bool(self.fs.exists(bucket))
        except Exception:
            return True  # a listing denied is not a missing bucket; the caller's error stands

    def missing_bucket_message(self) -> str:
        bucket = self.root.split("/", 1)[0]
        return f"bucket {bucket!r} of store {self.url} does not exist (or is not visible): create it first"

    def describe(self, exc: BaseException) -> str:
        """One line for an error the filesystem raised, never the credentials it was given."""
        name = type(exc).__name__
        if "Credential" in name or "credential" in str(exc)[:200]:
            return f"no credentials for {self.url}: set {_CREDENTIALS.get(self.extra, 'the credentials')}"
        if any(w in name for w in ("Connect", "Endpoint", "Timeout")) or isinstance(
            exc, (ConnectionError, TimeoutError)
        ):
            return (
                f"cannot reach the object store of {self.url} ({name}): "
                f"check {_ENDPOINT.get(self.extra, 'the endpoint')} and the network"
            )
        return f"store {self.url}: {name}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
