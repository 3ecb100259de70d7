"""`ImageDataset`: one split of one source, with labels, class names, templates and a fingerprint."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from clipfuse.data.readers import decode
from clipfuse.data.sampling import balanced_subset
from clipfuse.errors import DataError
from clipfuse.hashing import value_hash


@dataclass
class ImageDataset:
    """A list of (encoded image, label) pairs behind a picklable reader.

    `positions` maps each sample to its index in the full split, so a `--limit` subset and the
    full split share sample identities. `view_key` names this exact selection in a feature store.
    """

    name: str
    split: str
    source: str
    source_fingerprint: str
    classnames: list[str]
    templates: list[str]
    labels: np.ndarray  # (N,) int64
    sample_ids: list[str]
    reader: object  # has .read(i) -> bytes | np.ndarray, indexed by positions
    positions: np.ndarray  # (N,) int64 positions in the full split
    limit: int | None = None
    columns: dict[str, str] | None = None  # Parquet: the image and label columns read

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def read(self, i: int):
        """Encoded payload of sample i (bytes, or an array row for IDX data)."""
        return self.reader.read(int(self.positions[i]))

    def load_image(self, i: int) -> Image.Image:
        return decode(self.read(i))

    def subset(self, limit: int | None, seed: int = 0) -> ImageDataset:
        """A deterministic class-balanced subset of `limit` samples (all when None)."""
        if limit is None or limit >= len(self):
            return self
        if limit <= 0:
            raise DataError(f"--limit must be positive, got {limit}")
        keep = balanced_subset(self.labels, limit, seed=seed)
        return replace(
            self,
            labels=self.labels[keep],
            sample_ids=[self.sample_ids[k] for k in keep],
            positions=self.positions[keep],
            limit=limit,
        )

    @property
    def fingerprint(self) -> str:
        """Hash of the source content, the split and the selected samples."""
        return value_hash([self.source_fingerprint, self.split, self.positions.tolist()], 16)

    @property
    def view_key(self) -> str:
        """Readable store key: name-split-(all|limitN)-hash."""
        size = "all" if self.limit is None else f"limit{self.limit}"
        return f"{self.name}-{self.split}-{size}-{self.fingerprint[:10]}"

    def describe(self) -> dict:
        return {
            "name": self.name,
            "split": self.split,
            "source": self.source,
            "source_fingerprint": self.source_fingerprint,
            "num_samples": len(self),
            "num_classes": self.num_classes,
            "classnames": self.classnames,
            "templates": self.templates,
            "limit": self.limit,
            "fingerprint": self.fingerprint,
            **({"columns": self.columns} if self.columns else {}),
        }
