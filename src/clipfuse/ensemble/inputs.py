"""What users hold -> one ImageDataset for prediction: a path (file or folder), a list of them,
PIL images, numpy arrays (an HWC uint8 image, a grayscale HW image, or a batch of either), or a
list mixing these. Paths are read in the loader like `clipfuse predict`'s files; in-memory
images are decoded from their pixels exactly as IDX datasets are (`readers.decode`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipfuse.data.dataset import ImageDataset
from clipfuse.data.sources import expand_paths
from clipfuse.errors import DataError
from clipfuse.hashing import value_hash

ImageLike = str | Path | Image.Image | np.ndarray
Images = ImageLike | Iterable[ImageLike]


@dataclass
class MemoryReader:
    """Item i: the bytes of a file (a path) or the pixels of an in-memory image (an array)."""

    items: list[str | np.ndarray]

    def read(self, i: int) -> bytes | np.ndarray:
        item = self.items[i]
        if isinstance(item, np.ndarray):
            return item
        with open(item, "rb") as f:
            return f.read()


def _array_images(array: np.ndarray) -> list[np.ndarray]:
    """An array as a list of HWC/HW uint8 images (a 4-D array, or a 3-D one whose last axis is
    not 1/3/4 channels, is a batch)."""
    if array.dtype != np.uint8:
        raise DataError(
            f"image arrays must be uint8 (0-255, HWC); got {array.dtype} -- e.g. "
            "(x * 255).round().astype(np.uint8) for floats in [0, 1]"
        )
    if array.ndim == 2:
        return [array]
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        return [_channels_last(array)]
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] > 4:
        raise DataError(
            f"image array of shape {array.shape} looks channels-first; pass HWC "
            "(np.transpose(x, (1, 2, 0)))"
        )
    if array.ndim == 3:
        return list(array)  # (N, H, W) grayscale batch
    if array.ndim == 4 and array.shape[-1] in (1, 3, 4):
        return [_channels_last(a) for a in array]
    raise DataError(
        f"cannot read an image array of shape {array.shape}: expected (H, W), (H, W, 3), "
        "(N, H, W) or (N, H, W, 3) uint8"
    )


def _channels_last(image: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
        return image[..., 0]
    if image.shape[-1] == 4:
        return np.asarray(Image.fromarray(image, "RGBA").convert("RGB"))
    return image


def _flatten(images: Any) -> list[str | np.ndarray]:
    if isinstance(images, (str, Path)):
        return list(expand_paths([str(images)]))
    if isinstance(images, Image.Image):
        return [np.asarray(images.convert("RGB"))]
    if isinstance(images, np.ndarray):
        return [np.ascontiguousarray(a) for a in _array_images(images)]
    if hasattr(images, "numpy") and hasattr(images, "dtype"):  # a torch tensor
        return _flatten(images.detach().cpu().numpy())
    if isinstance(images, Iterable) and not isinstance(images, (Mapping, bytes)):
        return [item for image in images for item in _flatten(image)]
    raise DataError(
        f"cannot predict on a {type(images).__name__}: pass a path, a list of paths, PIL images "
        "or uint8 arrays"
    )


def images_dataset(images: Images) -> ImageDataset:
    """One dataset (labels unknown) of everything in `images`, in order; sample ids are the
    paths, ``image[k]`` for the k-th in-memory image."""
    items = _flatten(images)
    if not items:
        raise DataError("no images to predict on")
    ids = [item if isinstance(item, str) else f"image[{k}]" for k, item in enumerate(items)]
    return ImageDataset(
        name="images",
        split="all",
        source="memory",
        source_fingerprint=value_hash(ids),
        classnames=[],
        templates=[],
        labels=np.full(len(items), -1, dtype=np.int64),
        sample_ids=ids,
        reader=MemoryReader(items),
        positions=np.arange(len(items), dtype=np.int64),
    )


def in_memory(dataset: ImageDataset) -> bool:
    """Whether some images live in this process (DataLoader workers would copy them)."""
    reader = dataset.reader
    return isinstance(reader, MemoryReader) and any(isinstance(i, np.ndarray) for i in reader.items)
