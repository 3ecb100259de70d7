"""Names used as path components in the store: entry keys, lock names, array-set names."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def check_slug(value: str, what: str) -> str:
    """Return ``value`` if it is a safe single path component, else raise ``ValueError``.

    Safe means letters, digits and ``._+-``, not starting with a dot: it can never escape the store
    root, hide as a dotfile, or collide with the temp names of :mod:`clipfuse.store.atomic`.
    """
    if not isinstance(value, str) or _SLUG_RE.match(value) is None:
        raise ValueError(
            f"{what} must be 1-200 characters of letters, digits and '._+-', "
            f"not starting with '.' or '-': got {value!r}"
        )
    return value


@dataclass(frozen=True, order=True)
class EntryKey:
    """Identifies one entry: which samples (``view``) went through which model (``backbone``).

    Both are readable slugs ending in a content hash, e.g. ``cifar10-test-limit200-3f2a9c1b`` and
    ``rn-tiny-9a8b7c6d``; the hash makes a key change whenever the data or weights change.
    """

    view: str
    backbone: str

    def __post_init__(self) -> None:
        check_slug(self.view, "view fingerprint")
        check_slug(self.backbone, "backbone fingerprint")

    def __str__(self) -> str:
        return f"{self.view}/{self.backbone}"
