"""The worker side of the Ray engine: the functions and actors Ray Data runs on the cluster.

A block of the pipeline is one shard. Each stage handles one whole block (`batch_size=None`) and
the encoders run one forward per local batch (`batch_size` slices of the shard) with the driver's
thread count, so every backbone encodes exactly the image batches the local engine encodes and
the features come out bit-identical. Each encoder writes its backbone's shard itself and passes
on only a receipt: feature bytes go from the worker to the store, never to the driver.

This module imports no Ray: the stages are plain callables that Ray Data ships to its workers.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipfuse.data.dataset import ImageDataset
from clipfuse.data.readers import decode
from clipfuse.errors import BackboneError, DataError
from clipfuse.extraction.decode_once import Perturbation
from clipfuse.store import EntryKey, FeatureStore

CRASH_ONCE_ENV = "CLIPFUSE_RAY_CRASH_ONCE"  # test hook: path of a trigger file, see _maybe_crash
EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)


def read_and_decode(
    chunk: dict[str, np.ndarray],
    dataset: ImageDataset,
    perturbation: Perturbation | None = None,
) -> dict[str, np.ndarray]:
    """Map stage: one chunk row `{shard, start, stop}` -> one row per image, decoded once.

    The image bytes are read here, on the worker, from the dataset's reader (files or tar
    members: every node must see the data source). A read that fails is a node that cannot see
    the data, and stops the job with one line (the local engine, where a missing file is one
    bad sample, records it instead). An image that cannot be decoded becomes an empty array and
    its error, recorded in the shard as the local engine records it.
    """
    positions, shards, images, errors = [], [], [], []
    for shard, start, stop in zip(chunk["shard"], chunk["start"], chunk["stop"]):
        for position in range(int(start), int(stop)):
            positions.append(position)
            shards.append(int(shard))
            try:
                payload = dataset.read(position)
            except OSError as exc:
                raise DataError(
                    f"a Ray worker on {platform.node()} cannot read sample "
                    f"{dataset.sample_ids[position]!r} of {dataset.source}: {exc}; every node "
                    "must see the data source at the same path"
                ) from None
            try:
                image = decode(payload)
                if perturbation is not None:
                    image = perturbation(image, position)
                images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
                errors.append("")
            except Exception as exc:  # a corrupt image must not stop a long run: it is recorded
                images.append(EMPTY_IMAGE)
                errors.append(f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__)
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return {
        "position": np.asarray(positions, dtype=np.int64),
        "shard": np.asarray(shards, dtype=np.int64),
        "error": np.asarray(errors, dtype=object),
        "image": column,
    }


class BackboneEncoder:
    """Actor: one backbone, loaded once per actor, encoding and writing the shards it lacks.

    The model is loaded from its canonical spec on the worker and must have the fingerprint (and
    preprocessing) the driver recorded in the manifest, so a node with other weights under the
    same name cannot write features into the entry.
    """

    def __init__(
        self,
        index: int,
        spec: str,
        fingerprint: str,
        preprocess_repr: str,
        device: str,
        precision: str,
        embed_dim: int,
        needs_by_shard: dict[int, tuple[int, ...]],
        batch_size: int,
        shard_size: int,
        threads: int,
        keep_images: bool,
        store: FeatureStore,
        entry_key: EntryKey,
        dataset: ImageDataset,
    ) -> None:
        from clipfuse.backbones import load_backbone

        torch.set_num_threads(max(1, threads))
        self.index = index
        self.backbone = load_backbone(spec, device=device, precision=precision, with_gflops=False)
        found = self.backbone.info.fingerprint
        if found != fingerprint or repr(self.backbone.preprocess) != preprocess_repr:
            raise BackboneError(
                f"a Ray worker on {platform.node()} loads {spec!r} as {found}, the driver as "
                f"{fingerprint}: every node needs the same weights"
            )
        self.embed_dim = embed_dim
        self.wanted = {s for s, needs in needs_by_shard.items() if index in needs}
        self.keep_images = keep_images
        self.batch_size, self.shard_size = batch_size, shard_size
        self.entry = store.entry(entry_key)
        self.labels, self.sample_ids = dataset.labels, dataset.sample_ids

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        _maybe_crash()
        n = len(batch["position"])
        features = np.zeros((n, self.embed_dim), dtype=np.float32)
        groups: dict[tuple[int, int], list[int]] = {}
        for r in range(n):
            shard, position = int(batch["shard"][r]), int(batch["position"][r])
            if not batch["error"][r] and shard in self.wanted:
                batch_index = (position - shard * self.shard_size) // self.batch_size
                groups.setdefault((shard, batch_index), []).append(r)
        for rows in groups.values():  # the local engine's batches, one forward each
            pixels = torch.stack(
                [
                    self.backbone.preprocess(Image.fromarray(np.asarray(batch["image"][r])))
                    for r in rows
                ]
            )
            features[rows] = self.backbone.encode_images(pixels).cpu().numpy()
        receipts = np.full(n, "", dtype=object)
        for shard in sorted({int(s) for s in batch["shard"]} & self.wanted):
            rows = np.flatnonzero(batch["shard"] == shard)
            receipts[rows[0]] = self._write(shard, batch, rows, features)
        out = {k: v for k, v in batch.items() if k != "image" or self.keep_images}
        out[f"receipt_{self.index}"] = receipts
        return out

    def _write(self, shard: int, batch: dict[str, np.ndarray], rows, features) -> str:
        """Write this backbone's shard from the block's rows; the receipt as JSON (the driver
        commits it). Refuses a block that holds only part of the shard."""
        positions = batch["position"][rows]
        start, stop = self.entry.shard_range(shard)
        if sorted(int(p) for p in positions) != list(range(start, stop)):
            raise RuntimeError(f"a Ray block holds part of shard {shard} only; cannot write it")
        ok = [r for r in rows if not batch["error"][r]]
        idx = batch["position"][ok].astype(np.int64)
        failures = [
            {"index": int(p), "sample_id": self.sample_ids[p], "error": str(batch["error"][r])}
            for r in rows
            if batch["error"][r]
            for p in [int(batch["position"][r])]
        ]
        receipt = self.entry.stage_shard(
            shard,
            features=features[ok],
            indices=idx,
            labels=self.labels[idx],
            sample_ids=[self.sample_ids[i] for i in idx],
            failures=failures,
        )
        return json.dumps(asdict(receipt))


def _maybe_crash() -> None:
    """Test hook: if `$CLIPFUSE_RAY_CRASH_ONCE` names an existing file, the first actor call to
    remove it dies at once (as a killed worker does); Ray restarts the actor and retries."""
    trigger = os.environ.get(CRASH_ONCE_ENV)
    if not trigger:
        return
    try:
        os.unlink(trigger)
    except FileNotFoundError:
        return
    os._exit(1)
