"""Per-sample zero-shot outputs for analysis elsewhere (`clipfuse zeroshot --predictions/--logits`).

Predictions CSV: one row per (sample, backbone), columns `PREDICTION_COLUMNS`: the sample id, the
backbone's short name, the true class index, the predicted class index, the five best class
indices best first (`top1` is `pred`; empty where there are fewer than five classes) and the two
class names.

Logits file (safetensors, no pickle; `LOGITS_FORMAT` version 1):
  tensors  `logits`  (B, N, C) float32  zero-shot logits (exactly the fusion inputs: scale·cos,
                                         + the logit bias for SigLIP-style models)
           `labels`  (N,) int64         true class indices
           `indices` (N,) int64         positions of the samples in the dataset view
  metadata (JSON strings) `format`, `version`, `view`, `backbones` (B short names), `specs`
           (B canonical specs), `fingerprints`, `logit_scales`, `logit_biases` (null when none),
           `classnames` (C), `sample_ids` (N; row n of every tensor is sample_ids[n]).
Read it with `safetensors.safe_open(path, "pt")` (or "numpy") and `json.loads(f.metadata()[key])`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch
from safetensors.torch import save

from clipfuse.errors import ClipfuseError
from clipfuse.logits.bundle import ViewBundle
from clipfuse.paths import ensure_dir
from clipfuse.store.atomic import atomic_write_bytes

TOP_K = 5
PREDICTION_COLUMNS = [
    "sample_id",
    "backbone",
    "label",
    "pred",
    *(f"top{k}" for k in range(1, TOP_K + 1)),
    "label_name",
    "pred_name",
]
LOGITS_FORMAT = "clipfuse.logits"


def predictions_csv(bundle: ViewBundle) -> str:
    """The predictions table as CSV text (sample-major: every backbone of sample 0, then 1...)."""
    k = min(TOP_K, len(bundle.classnames))
    top = bundle.logits.topk(k, dim=-1).indices  # (B, N, k)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    labels = bundle.labels.tolist()
    for n, sample_id in enumerate(bundle.sample_ids):
        for b, name in enumerate(bundle.names):
            best = top[b, n].tolist()
            label = labels[n]
            writer.writerow(
                [sample_id, name, label, best[0], *best, *[""] * (TOP_K - k)]
                + [bundle.classnames[label] if 0 <= label < len(bundle.classnames) else ""]
                + [bundle.classnames[best[0]]]
            )
    return out.getvalue()


def logits_file_bytes(bundle: ViewBundle) -> bytes:
    """The safetensors bytes of the logits file documented above."""
    tensors = {
        "logits": bundle.logits.float().contiguous(),
        "labels": bundle.labels.to(torch.int64).contiguous(),
        "indices": torch.as_tensor(bundle.indices, dtype=torch.int64).contiguous(),
    }
    meta = {
        "format": LOGITS_FORMAT,
        "version": 1,
        "view": bundle.view,
        "backbones": bundle.names,
        "specs": bundle.specs,
        "fingerprints": bundle.fingerprints,
        "logit_scales": bundle.logit_scales,
        "logit_biases": bundle.logit_biases or [None] * bundle.num_backbones,
        "classnames": bundle.classnames,
        "sample_ids": bundle.sample_ids,
    }
    return save(tensors, metadata={k: json.dumps(v) for k, v in meta.items()})


def write_per_sample(
    bundle: ViewBundle, predictions: str | None = None, logits: str | None = None
) -> list[Path]:
    """Write the requested files atomically; one-line error when a path cannot be written."""
    written = []
    for target, make in ((predictions, predictions_csv), (logits, logits_file_bytes)):
        if target is None:
            continue
        path = Path(target).expanduser()
        payload = make(bundle)
        data = payload.encode() if isinstance(payload, str) else payload
        try:
            ensure_dir(path.parent)
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise ClipfuseError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        written.append(path)
    return written
