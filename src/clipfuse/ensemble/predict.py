"""End-to-end prediction with a saved ensemble: decode each image once, run the backbones the
combiner needs, fuse, and report label, probability and (for NLC) the per-backbone temperatures.

Compute-aware combiners run less: a subset ensemble (``required_backbones_``) loads and runs
only its backbones; a cascade (``run_staged``) runs its backbones one at a time, cheapest
first, and encodes a backbone only for the images of the batch that have not exited yet.

`predict_pixels` is the core, on one batch of preprocessed pixels: `predict_images` feeds it
batches decoded from files, the HTTP server (`clipfuse.serve`) batches decoded from requests, so
both give the same labels and probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from clipfuse.backbones.backbone import Backbone
from clipfuse.data.dataset import ImageDataset
from clipfuse.data.image_failures import failure_record
from clipfuse.data.sources import files_dataset
from clipfuse.ensemble.inputs import in_memory
from clipfuse.extraction.decode_once import (
    DecodeOnceDataset,
    ShardNeeds,
    collate_decoded,
    reopen_reader,
)
from clipfuse.extraction.engine import default_workers, preprocess_key
from clipfuse.extraction.threads import compute_threads
from clipfuse.protocol import scores_whole_set

if TYPE_CHECKING:
    from clipfuse.ensemble.saved import SavedEnsemble


def _full_inputs(
    ensemble: SavedEnsemble, needed: list[int], encoded: dict[int, np.ndarray], n: int
):
    """Fusion inputs for all B backbones; backbones the combiner never reads get zeros."""
    dims = ensemble.combiner.feature_dims_ or [w.shape[1] for w in ensemble.classifiers]
    features = [torch.zeros(n, d) for d in dims]
    for k, b in enumerate(needed):
        features[b] = torch.from_numpy(np.ascontiguousarray(encoded[k][1]))
    logits = torch.zeros(len(dims), n, len(ensemble.classnames))
    for b in needed:
        logits[b] = ensemble.backbone_logits(b, features[b])
    return features, logits


def _batches(backbones, needed, dataset, batch_size, num_workers, progress):
    """Decoded batches (positions, {slot k of `needed`: (positions, pixels)}, failures).
    Backbones with equal preprocessing share one transform per image, as in extraction."""
    chosen = [backbones[b] for b in needed]
    loader = DataLoader(
        DecodeOnceDataset(dataset, range(len(dataset)), [m.preprocess for m in chosen],
                          ShardNeeds(None, 1, len(needed)), share_keys=[preprocess_key(m) for m in chosen]),
        batch_size=batch_size, num_workers=default_workers(chosen) if num_workers is None else num_workers,
        collate_fn=collate_decoded, worker_init_fn=reopen_reader,
    )  # fmt: skip
    with tqdm(total=len(dataset), unit="img", desc="predict", disable=not progress) as bar:
        for ok_positions, pixels, failures in loader:
            yield ok_positions, pixels, failures
            bar.update(len(ok_positions) + len(failures))


def preprocess_images(backbones: dict[int, Backbone], images: list) -> dict[int, torch.Tensor]:
    """Decoded RGB PIL images -> {backbone: (N, 3, H, W) pixels}; backbones with the same
    preprocessing share one transform per image (what `predict_images`' loader does)."""
    shared: dict[str, torch.Tensor] = {}
    pixels = {}
    for b, backbone in backbones.items():
        key = preprocess_key(backbone)
        if key not in shared:
            shared[key] = torch.stack([backbone.preprocess(image) for image in images])
        pixels[b] = shared[key]
    return pixels


@dataclass
class Fused:
    """One batch's fused output: probabilities (N, C) and what a record reports beside them."""

    proba: torch.Tensor
    temps: torch.Tensor | None = None  # NLC temperatures (N, B)
    cost: torch.Tensor | None = None  # a cascade's per-row cost
    used: torch.Tensor | None = None  # a cascade's backbones run per row

    def rows(self) -> list[Fused]:
        """One single-row Fused per image (the server batches images of several requests)."""
        return [
            Fused(*(None if t is None else t[k : k + 1] for t in self._parts()))
            for k in range(len(self.proba))
        ]

    @classmethod
    def cat(cls, parts: list[Fused]) -> Fused:
        """Rows back into one batch (inverse of ``rows``)."""
        columns = list(zip(*(p._parts() for p in parts)))
        return cls(*(None if c[0] is None else torch.cat(list(c)) for c in columns))

    def _parts(self) -> tuple[torch.Tensor | None, ...]:
        return self.proba, self.temps, self.cost, self.used

    def records(self, ensemble: SavedEnsemble, top_k: int) -> list[dict[str, Any]]:
        return prediction_records(
            ensemble, self.proba, top_k, temps=self.temps, cost=self.cost, used=self.used
        )


def fuse_pixels(
    ensemble: SavedEnsemble, backbones: dict[int, Backbone], pixels: dict[int, torch.Tensor]
) -> Fused:
    """One batch of preprocessed pixels ({needed backbone: (N, 3, H, W)}) -> fused output. A
    cascade encodes a later backbone only for the rows that have not exited."""
    needed = list(backbones)
    n = len(next(iter(pixels.values())))
    with torch.inference_mode():
        if ensemble.combiner.supports_staged:
            proba, cost, used = run_cascade(
                ensemble, lambda b, rows: backbones[b].encode_images(pixels[b][rows]), n
            )
            return Fused(proba, cost=cost, used=used)
        encoded = {
            k: (None, backbones[b].encode_images(pixels[b]).cpu().numpy())
            for k, b in enumerate(needed)
        }
        proba, temps = fuse_features(ensemble, needed, encoded, n)
    return Fused(proba, temps=temps)


def predict_pixels(
    ensemble: SavedEnsemble,
    backbones: dict[int, Backbone],
    pixels: dict[int, torch.Tensor],
    top_k: int = 1,
) -> list[dict[str, Any]]:
    """The core of prediction, shared by `predict_images` and the HTTP server: one batch of
    preprocessed pixels -> one record per image (label, probability, top-k, NLC temperatures
    or a cascade's backbones run and cost)."""
    return fuse_pixels(ensemble, backbones, pixels).records(ensemble, top_k)


def load_needed(ensemble: SavedEnsemble, device: str = "cpu") -> dict[int, Backbone]:
    """{position: loaded backbone} for the backbones the combiner reads, fingerprints checked."""
    needed = needed_backbones(ensemble)
    return dict(zip(needed, ensemble.load_backbones(device=device, only=needed)))


def needed_backbones(ensemble: SavedEnsemble) -> list[int]:
    """The backbone positions the combiner reads (a subset ensemble needs fewer than all)."""
    combiner = ensemble.combiner
    return [int(b) for b in combiner.required_backbones()]


def fuse_features(
    ensemble: SavedEnsemble, needed: list[int], encoded: dict[int, np.ndarray], n: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(probabilities (N, C), NLC temperatures (N, B) or None) from the needed backbones'
    features (`encoded[k]` = (positions, features) of backbone `needed[k]`)."""
    combiner = ensemble.combiner
    features, logits = _full_inputs(ensemble, needed, encoded, n)
    proba = combiner.predict_proba(features, logits).cpu()
    temps = None
    if combiner.has_temperatures:
        temps = combiner.predict_temperatures(features).cpu()
    return proba, temps


def run_cascade(ensemble: SavedEnsemble, encode, n: int):
    """(probabilities, cost, backbones run) of a staged combiner; `encode(b, rows)` encodes the
    images at `rows` with backbone `b` and is called only for the rows that have not exited."""

    def fetch(b: int, rows: torch.Tensor):
        feats = encode(b, rows.cpu()).cpu()
        return feats, ensemble.backbone_logits(b, feats)

    with torch.no_grad():
        fused, cost, used = ensemble.combiner.run_staged(n, fetch)
    return torch.softmax(fused, dim=-1).cpu(), cost, used


def prediction_records(
    ensemble: SavedEnsemble, proba: torch.Tensor, top_k: int, temps=None, cost=None, used=None
) -> list[dict[str, Any]]:
    """One `clipfuse predict --json` item per row (without its "image" key)."""
    values, classes = proba.topk(min(top_k, proba.shape[1]), dim=1)
    records = []
    for row in range(proba.shape[0]):
        record = {
            "label": ensemble.classnames[int(classes[row, 0])],
            "probability": float(values[row, 0]),
            "top": [{"label": ensemble.classnames[int(c)], "probability": float(v)}
                    for c, v in zip(classes[row], values[row])],
        }  # fmt: skip
        if temps is not None:
            record["temperatures"] = {
                rec["name"]: float(t) for rec, t in zip(ensemble.backbones, temps[row])
            }
        if used is not None:
            record["backbones_run"] = int(used[row])
            record["cost"] = float(cost[row])
        records.append(record)
    return records


def fused_batches(
    ensemble: SavedEnsemble,
    dataset: ImageDataset,
    backbones: dict[int, Backbone],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
    transductive: bool = False,
) -> Iterator[tuple[list[int], Fused | None, list[dict[str, Any]]]]:
    """(positions read, their fused output or None, failure records) per decoded batch.

    A transductive combiner is refused unless ``transductive=True``; then every image is
    encoded first and all of them are fused together (one answer for the whole set given)."""
    whole = scores_whole_set(ensemble.combiner, allowed=transductive)
    if num_workers is None and in_memory(dataset):
        num_workers = 0  # workers would copy the caller's arrays for nothing
    kept: list[int] = []
    encoded: list[list[np.ndarray]] = [[] for _ in backbones]
    all_failures: list[dict[str, Any]] = []
    stream = _batches(backbones, list(backbones), dataset, batch_size, num_workers, progress)
    for ok_positions, batch, batch_failures in stream:
        failures = [failure_record(dataset.sample_ids[p], e) for p, e in batch_failures]
        if not ok_positions:
            if whole:
                all_failures.extend(failures)
            else:
                yield [], None, failures
            continue
        pixels = {b: batch[k][1] for k, b in enumerate(backbones)}  # loader slots follow `needed`
        if whole:  # encode now, fuse once all images are in
            all_failures.extend(failures)
            kept.extend(ok_positions)
            with torch.inference_mode():
                for k, b in enumerate(backbones):
                    encoded[k].append(backbones[b].encode_images(pixels[b]).cpu().numpy())
        else:
            yield ok_positions, fuse_pixels(ensemble, backbones, pixels), failures
    if whole:
        fused = None
        if kept:
            parts = {k: (None, np.concatenate(e)) for k, e in enumerate(encoded)}
            fused = Fused(*fuse_features(ensemble, list(backbones), parts, len(kept)))
        yield kept, fused, all_failures


def predict_dataset(
    ensemble: SavedEnsemble,
    dataset: ImageDataset,
    *,
    backbones: dict[int, Backbone] | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int | None = None,
    top_k: int = 1,
    progress: bool = True,
    transductive: bool = False,
    threads: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(predictions, failures): one record per readable image, one ``{"image", "kind",
    "error"}`` per unreadable one (the policy of `clipfuse.data.image_failures`)."""
    backbones = load_needed(ensemble, device) if backbones is None else backbones
    predictions: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    workers = default_workers(list(backbones.values())) if num_workers is None else num_workers
    with compute_threads(threads, workers):
        for positions, fused, batch_failures in fused_batches(
            ensemble, dataset, backbones, batch_size=batch_size, num_workers=workers,
            progress=progress, transductive=transductive,
        ):  # fmt: skip
            failures.extend(batch_failures)
            if fused is None:
                continue
            records = fused.records(ensemble, top_k)
            for position, record in zip(positions, records):
                predictions.append({"image": dataset.sample_ids[position], **record})
    return predictions, failures


def predict_images(
    ensemble: SavedEnsemble, paths: list[str], **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(predictions, failures) for image files and folders of them (`clipfuse predict`);
    ``options`` as `predict_dataset` (``threads``: the encoders' CPU threads, as in extraction)."""
    return predict_dataset(ensemble, files_dataset(paths), **options)
