"""The reader/mapper half of extraction: decode each image once, then apply every backbone's
own preprocessing to the same decoded image (in DataLoader workers, off the compute thread)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, get_worker_info

from clipfuse.data.dataset import ImageDataset
from clipfuse.data.readers import decode

Perturbation = Callable[[Any, int], Any]  # (PIL image, sample position) -> PIL image


class DecodeOnceDataset(Dataset):
    """Item k: (position, {backbone index: pixel tensor}, error or None).

    `needs[p]` lists the backbone indices that still need position p, so a partly-complete store
    costs only the preprocessing that is missing. Backbones whose `share_keys` are equal get the
    same tensor from one application of the first one's transform: CLIP models of one family
    mostly share their preprocessing, and on a CPU the saved resizes are compute time.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        positions: Sequence[int],
        transforms: Sequence[Callable],
        needs: Callable[[int], Sequence[int]],
        perturbation: Perturbation | None = None,
        share_keys: Sequence[Hashable] | None = None,
    ):
        self.dataset = dataset
        self.positions = list(positions)
        self.transforms = list(transforms)
        self.needs = needs
        self.perturbation = perturbation
        keys = list(range(len(self.transforms))) if share_keys is None else list(share_keys)
        self.first_with_key = [keys.index(k) for k in keys]  # backbone -> whose transform to use

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        position = self.positions[k]
        try:
            image = decode(self.dataset.read(position))
            if self.perturbation is not None:
                image = self.perturbation(image, position)
            done: dict[int, Any] = {}
            pixels = {}
            for b in self.needs(position):
                source = self.first_with_key[b]
                if source not in done:
                    done[source] = self.transforms[source](image)
                pixels[b] = done[source]
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
    """Batch of items -> (positions, {backbone: (positions, stacked pixels)}, failures).

    Backbones that received the very same per-image tensors share one stacked batch (sent once
    to the main process)."""
    failures = [(p, err) for p, pixels, err in items if pixels is None]
    ok = [(p, pixels) for p, pixels, _ in items if pixels is not None]
    per_backbone: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    for position, pixels in ok:
        for b, tensor in pixels.items():
            slot = per_backbone.setdefault(b, ([], []))
            slot[0].append(position)
            slot[1].append(tensor)
    stacked: dict[tuple[int, ...], torch.Tensor] = {}
    batches = {}
    for b, (pos, ts) in per_backbone.items():
        same = tuple(map(id, ts))  # the tensors are alive in `items`, so ids are unambiguous
        if same not in stacked:
            stacked[same] = torch.stack(ts)
        batches[b] = (pos, stacked[same])
    return [p for p, _ in ok], batches, failures


def reopen_reader(_worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: give a forked worker its own file handles.

    A reader whose handles were opened in the parent before the fork shares their file offsets
    with every worker, and concurrent seek+read then returns another image's bytes. Readers that
    define `__setstate__` (handles dropped, reopened on demand) are rebuilt from their state, as
    a spawned worker would receive them.
    """
    info = get_worker_info()
    dataset = getattr(info.dataset, "dataset", None) if info is not None else None
    reader = getattr(dataset, "reader", None)
    if reader is not None and hasattr(type(reader), "__setstate__"):
        reader.__setstate__(reader.__getstate__())
