"""End-to-end prediction with a saved ensemble: decode each image once, run the backbones the
combiner needs, fuse, and report label, probability and (for NLC) the per-backbone temperatures.

Compute-aware combiners run less: a subset ensemble (``required_backbones_``) loads and runs
only its backbones; a cascade (``run_staged``) runs its backbones one at a time, cheapest
first, and encodes a backbone only for the images of the batch that have not exited yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from clipfuse.data.sources import files_dataset
from clipfuse.extraction.decode_once import DecodeOnceDataset, ShardNeeds, collate_decoded
from clipfuse.extraction.engine import default_workers, encode_stream

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
    """Decoded batches (positions, {backbone: pixels}, failures) without encoding anything."""
    transforms = [None] * len(needed)
    for k, b in enumerate(needed):
        transforms[k] = backbones[b].preprocess
    loader = DataLoader(
        DecodeOnceDataset(dataset, range(len(dataset)), transforms, ShardNeeds(None, 1, len(needed))),
        batch_size=batch_size, num_workers=default_workers([backbones[b] for b in needed]) if num_workers is None else num_workers,
        collate_fn=collate_decoded,
    )  # fmt: skip
    with tqdm(total=len(dataset), unit="img", desc="predict", disable=not progress) as bar:
        for ok_positions, pixels, failures in loader:
            yield ok_positions, pixels, failures
            bar.update(len(ok_positions) + len(failures))


def predict_images(
    ensemble: SavedEnsemble,
    paths: list[str],
    *,
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int | None = None,
    top_k: int = 1,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(predictions, failures): one dict per readable image, one per unreadable one."""
    dataset = files_dataset(paths)
    combiner = ensemble.combiner
    needed = [int(b) for b in combiner.required_backbones()]
    backbones = dict(zip(needed, ensemble.load_backbones(device=device, only=needed)))
    staged = combiner.supports_staged
    predictions: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    if staged:
        stream = _batches(backbones, needed, dataset, batch_size, num_workers, progress)
    else:
        stream = encode_stream([backbones[b] for b in needed], dataset, range(len(dataset)), batch_size=batch_size,
                               num_workers=num_workers, progress=progress, desc="predict")  # fmt: skip
    for ok_positions, batch, batch_failures in stream:
        failures.extend({"image": dataset.sample_ids[p], "error": e} for p, e in batch_failures)
        if not ok_positions:
            continue
        cost = used = temps = None
        if staged:
            slot = {b: k for k, b in enumerate(needed)}

            def fetch(b: int, rows: torch.Tensor, batch=batch, slot=slot):
                feats = backbones[b].encode_images(batch[slot[b]][1][rows.cpu()]).cpu()
                return feats, ensemble.backbone_logits(b, feats)

            with torch.no_grad():
                fused, cost, used = combiner.run_staged(len(ok_positions), fetch)
            proba = torch.softmax(fused, dim=-1).cpu()
        else:
            features, logits = _full_inputs(ensemble, needed, batch, len(ok_positions))
            proba = combiner.predict_proba(features, logits).cpu()
            if combiner.has_temperatures:
                temps = combiner.predict_temperatures(features).cpu()
        values, classes = proba.topk(min(top_k, proba.shape[1]), dim=1)
        for row, position in enumerate(ok_positions):
            record = {
                "image": dataset.sample_ids[position],
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
            predictions.append(record)
    return predictions, failures
