"""Extraction options as one object, so the cache key can never disagree with the images.

Before issue 22, ``extract(..., perturbation=p)`` took the store view's perturbation part as a
separate ``perturbation_key`` argument: without it, perturbed features were written under the
clean view's name (and, the other way round, a clean cache answered a perturbed request). Here
the key is a property of the perturbation itself, and a separate key is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from clipfuse.errors import ClipfuseError
from clipfuse.extraction.perturbations import Perturbation

DEFAULT_SHARD_SIZE = 1024


@dataclass(frozen=True)
class ExtractOptions:
    """How to extract. ``perturbation`` (None = clean images) also names the cached view."""

    batch_size: int = 64
    num_workers: int | None = None  # local engine only: Ray sizes its own decode stage
    shard_size: int = DEFAULT_SHARD_SIZE
    perturbation: Perturbation | None = None
    feature_dtype: str = "float16"
    progress: bool = True
    threads: int | None = None  # encoders' intra-op CPU threads (None: extraction.threads' default)

    @property
    def perturbation_key(self) -> str | None:
        """The perturbation's part of the store view key (derived, never passed)."""
        return None if self.perturbation is None else self.perturbation.key

    @classmethod
    def of(cls, options: ExtractOptions | None = None, **kwargs: Any) -> ExtractOptions:
        """``options`` with keyword overrides; an unknown keyword is one ClipfuseError line."""
        if "perturbation_key" in kwargs:
            raise ClipfuseError(
                "perturbation_key is derived from the perturbation (its .key); pass only "
                "perturbation=..."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ClipfuseError(f"unknown extraction option(s) {unknown}; known: {sorted(known)}")
        base = options or cls()
        return cls(**{**{f: getattr(base, f) for f in known}, **kwargs})
