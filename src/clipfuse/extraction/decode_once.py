"""The reader/mapper half of extraction: decode each image once, then apply every backbone's
own preprocessing to the same decoded image (in DataLoader workers, off the compute thread)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from clipfuse.data.dataset import ImageDataset
from clipfuse.data.readers import decode

Perturbation = Callable[[Any, int], Any]  # (PIL image, sample position) -> PIL image


class DecodeOnceDataset(Dataset):
    """Item k: (position, {backbone index: pixel tensor}, error or None).

    `needs[p]` lists the backbone indices that still need position p, so a partly-complete store
    costs only the preprocessing that is missing.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        positions: Sequence[int],
        transforms: Sequence[Callable],
        needs: Callable[[int], Sequence[int]],
        perturbation: Perturbation | None = None,
    ):
        self.dataset = dataset
        self.positions = list(positions)
        self.transforms = list(transforms)
        self.needs = needs
        self.perturbation = perturbation

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        position = self.positions[k]
        try:
            image = decode(self.dataset.read(position))
            if self.perturbation is not None:
                image = self.perturbation(image, position)
            pixels = {b: self.transforms[b](image) for b in self.needs(position)}
        except Exception as exc:  # a corrupt image must not stop a long run: it is recorded
            return position, None, f"{type(exc).__name__}: {exc}"[:300]
        return position, pixels, None


class ShardNeeds:
    """Picklable `needs`: the backbones lacking the shard of a position (workers may be spawned)."""

    def __init__(
        self, by_shard: dict[int, tuple[int, ...]] | None, shard_size: int, num_backbones: int
    ):
        self.by_shard = by_shard
        self.shard_size = shard_size
        self.every = tuple(range(num_backbones))

    def __call__(self, position: int) -> tuple[int, ...]:
        return self.every if self.by_shard is None else self.by_shard[position // self.shard_size]


def collate_decoded(items):
    """Batch of items -> (positions, {backbone: stacked pixels, positions}, failures)."""
    failures = [(p, err) for p, pixels, err in items if pixels is None]
    ok = [(p, pixels) for p, pixels, _ in items if pixels is not None]
    per_backbone: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    for position, pixels in ok:
        for b, tensor in pixels.items():
            slot = per_backbone.setdefault(b, ([], []))
            slot[0].append(position)
            slot[1].append(tensor)
    batches = {b: (pos, torch.stack(ts)) for b, (pos, ts) in per_backbone.items()}
    return [p for p, _ in ok], batches, failures
