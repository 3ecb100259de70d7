"""End-to-end prediction with a saved ensemble: decode each image once, run every backbone,
fuse, and report label, probability and (for NLC) the per-backbone temperatures."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clipfuse.data.sources import files_dataset
from clipfuse.ensemble.saved import SavedEnsemble
from clipfuse.extraction.engine import encode_stream


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
    backbones = ensemble.load_backbones(device=device)
    predictions: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    stream = encode_stream(backbones, dataset, range(len(dataset)), batch_size=batch_size,
                           num_workers=num_workers, progress=progress, desc="predict")
    for ok_positions, encoded, batch_failures in stream:
        failures.extend({"image": dataset.sample_ids[p], "error": e} for p, e in batch_failures)
        if not ok_positions:
            continue
        features = [torch.from_numpy(np.ascontiguousarray(encoded[b][1])) for b in range(len(backbones))]
        logits = ensemble.logits(features)
        proba = ensemble.combiner.predict_proba(features, logits).cpu()
        temps = None
        if hasattr(ensemble.combiner, "predict_temperatures"):
            temps = ensemble.combiner.predict_temperatures(features).cpu()
        values, classes = proba.topk(min(top_k, proba.shape[1]), dim=1)
        for row, position in enumerate(ok_positions):
            record = {
                "image": dataset.sample_ids[position],
                "label": ensemble.classnames[int(classes[row, 0])],
                "probability": float(values[row, 0]),
                "top": [{"label": ensemble.classnames[int(c)], "probability": float(v)}
                        for c, v in zip(classes[row], values[row])],
            }
            if temps is not None:
                record["temperatures"] = {rec["name"]: float(t) for rec, t in zip(ensemble.backbones, temps[row])}
            predictions.append(record)
    return predictions, failures
