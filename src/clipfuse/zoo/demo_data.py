"""Build the small demo datasets shipped in `clipfuse/demo_data/` from the full local copies.

- `cifar10-demo/`: `train.tar` and `test.tar` (members `SPLIT/CLASS/NAME.jpg`, read by
  `imagefolder:`), the original JPEG bytes copied as they are.
- `fashion-mnist-demo/`: gzipped IDX files (`train-*`, `t10k-*`, read by `idx:`).

Test images: a class-balanced subset of the test split, the same one `--limit N` picks
(`balanced_subset(labels, N, seed=0)`). Train images: a class-balanced part of the zoo's train
hold-out, so hold-out methods (NLC, few-shot) can be demonstrated on images no zoo model saw.
Archives are byte-reproducible (fixed order, zero mtimes and owners).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np

from clipfuse.data import open_dataset
from clipfuse.data.sampling import balanced_subset
from clipfuse.store.atomic import atomic_write_bytes
from clipfuse.zoo.trainset import default_data_root, holdout_positions

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_data"
N_TEST = 2000
N_TRAIN = 500


def demo_positions(
    labels: np.ndarray, split: str, n_test: int = N_TEST, n_train: int = N_TRAIN
) -> np.ndarray:
    """Sorted positions of the demo images of one split."""
    if split == "test":
        return balanced_subset(labels, n_test, seed=0)
    pool = holdout_positions(labels)
    return pool[balanced_subset(labels[pool], n_train, seed=0)]


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file, gzipped with a zero timestamp."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0)


def build_cifar10(root: Path, out: Path) -> dict[str, int]:
    counts = {}
    for split in ("train", "test"):
        dataset = open_dataset(f"imagefolder:{root / 'cifar10'}", split)
        keep = demo_positions(dataset.labels, split)
        members = [(dataset.sample_ids[i], dataset.read(i)) for i in keep]
        atomic_write_bytes(out / "cifar10-demo" / f"{split}.tar", _tar_bytes(members))
        counts[split] = len(keep)
    return counts


def build_fashion(root: Path, out: Path) -> dict[str, int]:
    counts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        dataset = open_dataset(f"idx:{root / 'fashion-mnist'}", split)
        keep = demo_positions(dataset.labels, split)
        images = np.stack([dataset.read(i) for i in keep])
        folder = out / "fashion-mnist-demo"
        atomic_write_bytes(folder / f"{prefix}-images-idx3-ubyte.gz", _idx_bytes(images))
        atomic_write_bytes(
            folder / f"{prefix}-labels-idx1-ubyte.gz", _idx_bytes(dataset.labels[keep])
        )
        counts[split] = len(keep)
    return counts


def build_demo_data(
    data_root: str | Path | None = None, out: str | Path = DEMO_DIR
) -> dict[str, dict[str, int]]:
    """Write both demo datasets; returns image counts per dataset and split."""
    root, out = Path(data_root) if data_root else default_data_root(), Path(out)
    return {"cifar10": build_cifar10(root, out), "fashion-mnist": build_fashion(root, out)}


if __name__ == "__main__":
    print(build_demo_data())
