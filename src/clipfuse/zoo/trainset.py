"""The zoo's training data: decoded once into uint8 arrays, then served from memory.

Every image goes through open_clip's own eval transform for the zoo's input size (with mean 0,
std 1, so the result is exactly the uint8 image that transform produces), which is why the
training input equals what `load_backbone("zoo:NAME").preprocess` gives at evaluation time
(Fashion-MNIST: 28 -> 32 bicubic, gray -> RGB). A fixed class-balanced hold-out of each train
split is never trained on, so fusion methods can draw labelled hold-outs the zoo has not seen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm import tqdm

from clipfuse.data import open_dataset
from clipfuse.data.sampling import balanced_subset
from clipfuse.store.atomic import atomic_write_bytes
from clipfuse.zoo.configs import IMAGE_SIZE

HOLDOUT_PER_DATASET = 1000  # class-balanced train images per dataset the zoo never trains on
HOLDOUT_SEED = 1234
FLIP_DOMAINS = ("cifar10",)  # horizontal flips suit natural photos; Fashion-MNIST keeps its pose
PAD = 4


def default_data_root() -> Path:
    """`$CLIPFUSE_DATA`, else the `shared/data` folder beside the project checkout."""
    env = os.environ.get("CLIPFUSE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"


def default_sources(data_root: str | Path | None = None) -> dict[str, str]:
    root = Path(data_root) if data_root else default_data_root()
    return {
        "cifar10": f"imagefolder:{root / 'cifar10'}",
        "fashion-mnist": f"idx:{root / 'fashion-mnist'}",
    }


def cache_dir() -> Path:
    return Path(os.environ.get("CLIPFUSE_CACHE", "~/.cache/clipfuse")).expanduser() / "zoo"


def decode_split(
    source: str, split: str, cache: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,) int64) of a whole split, cached on disk."""
    import open_clip

    dataset = open_dataset(source, split)
    cache = cache or cache_dir()
    path = cache / f"{dataset.name}-{split}-{dataset.fingerprint[:16]}.safetensors"
    if path.is_file():
        arrays = load_file(path)
        return arrays["images"].numpy(), arrays["labels"].numpy()
    transform = open_clip.image_transform(
        IMAGE_SIZE, is_train=False, mean=(0.0,) * 3, std=(1.0,) * 3
    )
    images = np.empty((len(dataset), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in tqdm(
        range(len(dataset)), desc=f"decode {dataset.name}/{split}", unit="img", mininterval=2
    ):
        pixels = transform(dataset.load_image(i))  # (3, H, W) in [0, 1], exactly k/255
        images[i] = (pixels * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    labels = np.asarray(dataset.labels, dtype=np.int64)
    atomic_write_bytes(
        path, save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)})
    )
    return images, labels


def holdout_positions(labels: np.ndarray, n: int = HOLDOUT_PER_DATASET) -> np.ndarray:
    """Sorted positions of the train hold-out the zoo never sees (class balanced, fixed seed)."""
    return balanced_subset(labels, n, seed=HOLDOUT_SEED)


@dataclass
class TrainSet:
    """All training images in memory, with a per-step deterministic batch order and augmentation."""

    images: torch.Tensor  # (N, 32, 32, 3) uint8
    labels: torch.Tensor  # (N,) int64, class index within its domain
    domains: torch.Tensor  # (N,) int64, index into `domain_names`
    domain_names: tuple[str, ...]
    counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def build(
        cls,
        sources: dict[str, str],
        holdout: int = HOLDOUT_PER_DATASET,
        limit: int | None = None,
        cache: Path | None = None,
    ) -> TrainSet:
        """Train splits minus their hold-outs, optionally cut to `limit` balanced images per domain."""
        images, labels, domains, counts = [], [], [], {}
        for d, name in enumerate(sources):
            x, y = decode_split(sources[name], "train", cache)
            keep = np.setdiff1d(np.arange(len(y)), holdout_positions(y, holdout) if holdout else [])
            if limit is not None:
                keep = keep[balanced_subset(y[keep], limit, seed=0)]
            images.append(torch.from_numpy(x[keep]))
            labels.append(torch.from_numpy(y[keep]))
            domains.append(torch.full((len(keep),), d, dtype=torch.int64))
            counts[name] = len(keep)
        return cls(torch.cat(images), torch.cat(labels), torch.cat(domains), tuple(sources), counts)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training pixels in [0, 1], rounded for the config."""
        x = self.images.reshape(-1, 3).double() / 255.0
        return [round(v, 4) for v in x.mean(0).tolist()], [round(v, 4) for v in x.std(0).tolist()]

    def batch_indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Sample indices of a step: epoch-wise permutations that depend only on (seed, epoch)."""
        per_epoch = len(self) // batch_size
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(
            len(self), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        )
        return order[k * batch_size : (k + 1) * batch_size]

    def augment(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random 32x32 crops of the zero-padded images, horizontal flips for photo domains."""
        n = len(idx)
        padded = torch.nn.functional.pad(self.images[idx], (0, 0, PAD, PAD, PAD, PAD))
        oy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
        flip_ok = torch.tensor(
            [self.domain_names[int(d)] in FLIP_DOMAINS for d in range(len(self.domain_names))]
        )
        flip = (torch.rand(n, generator=generator) < 0.5) & flip_ok[self.domains[idx]]
        ar = torch.arange(IMAGE_SIZE)
        rows = oy[:, None] + ar
        cols = torch.where(flip[:, None], ox[:, None] + IMAGE_SIZE - 1 - ar, ox[:, None] + ar)
        return padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
