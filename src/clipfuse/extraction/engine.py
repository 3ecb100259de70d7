"""Extraction: N backbones in one pass over a dataset view, into the feature store.

Each missing shard is processed once: its images are decoded once (DataLoader workers), every
backbone that lacks the shard encodes them, and each backbone's shard is written atomically as
soon as all its positions are done. Killing the run loses at most the shards in flight; running
again redoes only those. A second identical run finds nothing missing and returns at once.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from clipfuse.backbones.backbone import Backbone
from clipfuse.data.dataset import ImageDataset
from clipfuse.data.sources import canonical_source
from clipfuse.extraction.decode_once import (
    DecodeOnceDataset,
    Perturbation,
    ShardNeeds,
    collate_decoded,
    reopen_reader,
)
from clipfuse.extraction.options import DEFAULT_SHARD_SIZE, ExtractOptions
from clipfuse.extraction.threads import compute_threads
from clipfuse.store import EntryKey, FeatureStore, StoreEntry


@dataclass
class ExtractionReport:
    """What one ``extract`` call did: the store view, the entry key per backbone, how many
    images it encoded and shards it wrote (0 and 0 on a rerun of finished work), unreadable
    images, and the wall time."""

    view: str
    entries: dict[str, EntryKey]  # backbone name -> store key
    images_processed: int = 0
    shards_written: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    first_batch_seconds: float | None = None  # start-up: until the first encoded batch arrived
    threads: int | None = None  # encoders' intra-op threads (None: nothing was encoded)
    workers: int | None = None  # decode workers

    @property
    def images_per_second(self) -> float:
        return self.images_processed / self.seconds if self.seconds > 0 else 0.0


def view_name(dataset: ImageDataset, perturbation_key: str | None = None) -> str:
    """Store view for a dataset selection, plus the perturbation (part of the key) if any."""
    return (
        dataset.view_key if perturbation_key is None else f"{dataset.view_key}+{perturbation_key}"
    )


def entry_provenance(
    backbone: Backbone, dataset: ImageDataset, perturbation_key: str | None
) -> dict[str, Any]:
    """What the features depend on; an existing entry must match this exactly.

    Spec and source strings are left out on purpose: the same weights or data reached by another
    path are the same content (their hashes say so). Their absolute forms are recorded in the
    store's backbone-info and view-info records, so later steps can reload the model.
    """
    return provenance_for(backbone.info.to_dict(), dataset, perturbation_key)


def provenance_for(
    info: dict[str, Any], dataset: ImageDataset, perturbation_key: str | None
) -> dict[str, Any]:
    """`entry_provenance` from a backbone's info record (`BackboneInfo.to_dict()`, as the store's
    backbone-info holds it), so a finished entry can be checked without building the model."""
    return {
        "backbone": {
            "fingerprint": info["fingerprint"],
            "weights_sha256": info["weights_sha256"],
            "preprocess": info["preprocess"],
            "embed_dim": info["embed_dim"],
        },
        "dataset": {
            "name": dataset.name,
            "source_fingerprint": dataset.source_fingerprint,
            "split": dataset.split,
            "fingerprint": dataset.fingerprint,
            "limit": dataset.limit,
        },
        "perturbation": perturbation_key,
        "feature": "L2-normalised projected image embedding (open_clip encode_image)",
    }


HEAVY_GFLOPS_PER_IMAGE = 1.0  # encoders at least this costly keep a small CPU busy on their own


def default_workers(backbones: Sequence[Backbone] = ()) -> int:
    """Decode workers when none are asked for.

    Workers overlap decoding with encoding, which pays when cores are spare or the encoders are
    light (the zoo's 32-pixel models are decode-bound). On a CPU with at most 2 cores, encoders
    of HEAVY_GFLOPS_PER_IMAGE or more use every core already, and workers decoding beside them
    slow them down more than decoding in between batches costs: 7 backbones (ViT-B/32, ViT-B/16,
    RN50 + zoo), 128 ImageNet JPEGs, 2 cores: extraction / pure forward time 1.04-1.06 with 2
    workers, 1.02 with none (BENCHMARKS.md).
    """
    cores = os.cpu_count() or 1
    heavy = sum(b.info.image_gflops or 0.0 for b in backbones) >= HEAVY_GFLOPS_PER_IMAGE
    if backbones and cores <= 2 and heavy and all(b.device.type == "cpu" for b in backbones):
        return 0
    return max(1, min(4, cores))


def extract(
    backbones: Sequence[Backbone],
    dataset: ImageDataset,
    store: FeatureStore,
    options: ExtractOptions | None = None,
    **kwargs: Any,
) -> ExtractionReport:
    """Encode every image of `dataset` with every backbone; write what is missing to `store`.

    ``options`` (an ExtractOptions) or its fields as keywords (``batch_size=``, ``perturbation=``,
    ``threads=`` ...); the view written is named after the perturbation, if any. ``threads``: the
    encoders' intra-op CPU threads (default: the cores left beside the decode workers,
    ``extraction.threads``), restored when the call returns."""
    opts = ExtractOptions.of(options, **kwargs)
    plan = plan_extraction(
        backbones, dataset, store, opts.shard_size, opts.feature_dtype, opts.perturbation_key
    )
    if not plan.todo_shards:
        return plan.close()
    workers = default_workers(backbones) if opts.num_workers is None else opts.num_workers
    with compute_threads(opts.threads, workers) as used:
        plan.report.threads, plan.report.workers = used, workers
        assembler = ShardAssembler(plan, backbones, dataset)
        stream = encode_stream(
            backbones,
            dataset,
            plan.positions,
            plan.needs,
            batch_size=opts.batch_size,
            num_workers=workers,
            perturbation=opts.perturbation,
            progress=opts.progress,
            desc=f"extract {dataset.name}/{dataset.split}",
        )
        for ok_positions, encoded, batch_failures in stream:
            assembler.add(ok_positions, encoded, batch_failures)
        return assembler.close()


@dataclass
class ExtractionPlan:
    """What one extraction run must do: the begun entries and the shards each backbone lacks.

    Every engine starts from this, so all of them write the same entries, manifests and shards."""

    report: ExtractionReport
    entries: list[StoreEntry]
    missing: list[set[int]]  # per backbone: shard indices not yet written
    todo_shards: list[int]  # shards that at least one backbone lacks, ascending
    ranges: dict[int, tuple[int, int]]  # shard -> (start, stop) positions
    needs_by_shard: dict[int, tuple[int, ...]]  # shard -> backbones that lack it
    shard_size: int
    start_time: float

    @property
    def positions(self) -> list[int]:
        return [p for s in self.todo_shards for p in range(*self.ranges[s])]

    @property
    def needs(self) -> ShardNeeds:
        return ShardNeeds(self.needs_by_shard, self.shard_size, len(self.entries))

    def close(self) -> ExtractionReport:
        """Finalize complete entries and stamp the report's wall time."""
        for entry in self.entries:
            if entry.is_complete():
                entry.finalize()
        self.report.seconds = time.perf_counter() - self.start_time
        return self.report


def plan_extraction(
    backbones: Sequence[Backbone],
    dataset: ImageDataset,
    store: FeatureStore,
    shard_size: int = DEFAULT_SHARD_SIZE,
    feature_dtype: str = "float16",
    perturbation_key: str | None = None,
) -> ExtractionPlan:
    """Begin (or check) every backbone's entry and list the shards that are missing."""
    start_time = time.perf_counter()
    view = view_name(dataset, perturbation_key)
    entries = []
    for backbone in backbones:
        entry = store.entry(EntryKey(view=view, backbone=backbone.info.fingerprint))
        entry.begin(
            entry_provenance(backbone, dataset, perturbation_key),
            len(dataset),
            shard_size,
            feature_dtype,
        )
        entries.append(entry)
        _write_backbone_info(store, backbone)
        _write_view_info(store, view, dataset, perturbation_key)
    report = ExtractionReport(view, {b.info.name: e.key for b, e in zip(backbones, entries)})
    missing = [set(e.missing_shards()) for e in entries]
    todo_shards = sorted(set().union(*missing))
    return ExtractionPlan(
        report=report,
        entries=entries,
        missing=missing,
        todo_shards=todo_shards,
        ranges={s: entries[0].shard_range(s) for s in todo_shards},
        needs_by_shard={
            s: tuple(b for b in range(len(entries)) if s in missing[b]) for s in todo_shards
        },
        shard_size=shard_size,
        start_time=start_time,
    )


class ShardAssembler:
    """Collects encoded batches, in any order, and writes each backbone's shard as soon as every
    position of that shard has arrived (encoded or failed to decode)."""

    def __init__(
        self, plan: ExtractionPlan, backbones: Sequence[Backbone], dataset: ImageDataset
    ) -> None:
        self.plan = plan
        self.backbones = backbones
        self.dataset = dataset
        self.buffers: dict[tuple[int, int], list[tuple[list[int], np.ndarray]]] = defaultdict(list)
        self.failures: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.done_count: dict[int, int] = defaultdict(int)

    def add(
        self,
        ok_positions: list[int],
        encoded: dict[int, tuple[list[int], np.ndarray]],
        batch_failures: list[tuple[int, str]],
    ) -> None:
        """One batch: decoded positions, {backbone: (positions, features)}, (position, error)."""
        plan, report, shard_size = self.plan, self.plan.report, self.plan.shard_size
        if report.first_batch_seconds is None:
            report.first_batch_seconds = time.perf_counter() - plan.start_time
        for position, error in batch_failures:
            record = {
                "index": position,
                "sample_id": self.dataset.sample_ids[position],
                "error": error,
            }
            self.failures[position // shard_size].append(record)
            report.failures.append(record)
        for b, (pos, feats) in encoded.items():
            for shard, rows in _group_by_shard(pos, shard_size):
                self.buffers[(b, shard)].append(([pos[r] for r in rows], feats[rows]))
        for position in list(ok_positions) + [p for p, _ in batch_failures]:
            self.done_count[position // shard_size] += 1
        for shard in [s for s, n in self.done_count.items() if n == _length(plan.ranges[s])]:
            for b in plan.needs_by_shard[shard]:
                _flush(
                    plan.entries[b],
                    shard,
                    self.buffers.pop((b, shard), []),
                    self.dataset,
                    self.failures[shard],
                    self.backbones[b],
                )
                report.shards_written += 1
            del self.done_count[shard]
        report.images_processed += len(ok_positions) + len(batch_failures)

    def close(self) -> ExtractionReport:
        return self.plan.close()


def _length(bounds: tuple[int, int]) -> int:
    return bounds[1] - bounds[0]


def encode_stream(
    backbones: Sequence[Backbone],
    dataset: ImageDataset,
    positions: Sequence[int],
    needs: Callable[[int], Sequence[int]] | None = None,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    perturbation: Perturbation | None = None,
    progress: bool = True,
    desc: str = "encode",
) -> Iterator[tuple[list[int], dict[int, tuple[list[int], np.ndarray]], list[tuple[int, str]]]]:
    """Decode each position once, encode it with every backbone it `needs` (default: all).

    Yields per batch: decoded positions, {backbone: (positions, float32 features)}, and
    (position, error) for images that could not be decoded.
    """
    loader = DataLoader(
        DecodeOnceDataset(
            dataset,
            positions,
            [b.preprocess for b in backbones],
            needs or ShardNeeds(None, 1, len(backbones)),
            perturbation,
            share_keys=[preprocess_key(b) for b in backbones],
        ),
        batch_size=batch_size,
        num_workers=default_workers(backbones) if num_workers is None else num_workers,
        collate_fn=collate_decoded,
        pin_memory=any(b.device.type == "cuda" for b in backbones),
        worker_init_fn=reopen_reader,
    )
    with tqdm(total=len(positions), unit="img", desc=desc, disable=not progress) as bar:
        for ok_positions, batches, batch_failures in loader:
            encoded = {
                b: (pos, backbones[b].encode_images(pixels).cpu().numpy())
                for b, (pos, pixels) in batches.items()
            }
            yield ok_positions, encoded, batch_failures
            bar.update(len(ok_positions) + len(batch_failures))


def preprocess_key(backbone: Backbone) -> str:
    """Equal keys mean equal preprocessing, so one decoded image is transformed once for all of
    them. The recorded open_clip config is complete but describes the default transform only; the
    transform's repr is added so that a replaced `backbone.preprocess` is not shared by mistake.
    A square size is written as one number (configs say 224 or [224, 224] for the same thing)."""
    config = dict(backbone.info.preprocess)
    size = config.get("size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        config["size"] = size[0]
    return json.dumps(config, sort_keys=True) + repr(backbone.preprocess)


def _group_by_shard(positions: list[int], shard_size: int):
    groups: dict[int, list[int]] = defaultdict(list)
    for row, position in enumerate(positions):
        groups[position // shard_size].append(row)
    return groups.items()


def _flush(
    entry, shard: int, parts, dataset: ImageDataset, shard_failures, backbone: Backbone
) -> None:
    if parts:
        idx = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in parts])
        feats = np.concatenate([f for _, f in parts])
    else:
        idx = np.zeros(0, dtype=np.int64)
        feats = np.zeros((0, backbone.info.embed_dim), dtype=np.float32)
    entry.write_shard(
        shard,
        features=feats,
        indices=idx,
        labels=dataset.labels[idx],
        sample_ids=[dataset.sample_ids[i] for i in idx],
        failures=shard_failures,
    )


def _write_backbone_info(store: FeatureStore, backbone: Backbone) -> None:
    """Metadata later steps need without loading the model (GFLOPs for cascades and budgets).
    Rewritten when the GFLOPs count changed (counts before 2026-11-23 missed a ViT's attention
    projections), so budgets and trade-off plots read the current figure."""
    existing = store.get_array_set("backbone-info", backbone.info.fingerprint)
    gflops = backbone.info.image_gflops
    built = backbone.info.extra.get("built_from")
    if (
        existing is None
        or (gflops is not None and existing.metadata.get("image_gflops") != gflops)
        or (built and (existing.metadata.get("extra") or {}).get("built_from") != built)
    ):  # the record also says what the backbone was built from (a no-op rerun reads it)
        record = backbone.info.to_dict()
        if gflops is None and existing is not None:  # loaded without counting: keep the count
            record["image_gflops"] = existing.metadata.get("image_gflops")
        store.put_array_set("backbone-info", backbone.info.fingerprint, {}, record)


def _write_view_info(
    store: FeatureStore, view: str, dataset: ImageDataset, perturbation_key: str | None
) -> None:
    """Class names and templates of a view, so later steps need not reopen the data source."""
    if store.get_array_set("view-info", view) is None:
        store.put_array_set(
            "view-info",
            view,
            {"labels": dataset.labels.astype(np.int64)},
            {
                **dataset.describe(),
                "source": canonical_source(dataset.source),
                "perturbation": perturbation_key,
                "view": view,
            },
        )
