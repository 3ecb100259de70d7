"""Per-backbone zero-shot accuracy of a view, from cached features, overall and per class.

Per class because a wrong class name fails silently: a folder named `car` that every text tower
knows as "automobile" scores 0 % recall while the overall accuracy only looks a little low."""

from __future__ import annotations

from typing import Any

import torch

from clipfuse.evaluation.metrics import classification_metrics
from clipfuse.logits.bundle import ViewBundle


def zeroshot_table(bundle: ViewBundle) -> list[dict[str, Any]]:
    """One row per backbone: spec, top-1, top-5, mean per-class recall, sample count."""
    return [
        {"backbone": name, "spec": spec, **classification_metrics(logits, bundle.labels)}
        for name, spec, logits in zip(bundle.names, bundle.specs, bundle.logits)
    ]


def per_class_recall(bundle: ViewBundle) -> list[dict[str, Any]]:
    """One row per class: its name, image count and each backbone's recall (fraction) on it."""
    y = bundle.labels
    count = torch.bincount(y, minlength=len(bundle.classnames))
    rows = [{"class": c, "n": int(count[k])} for k, c in enumerate(bundle.classnames)]
    for name, logits in zip(bundle.names, bundle.logits):
        hit = torch.zeros(len(rows)).index_add_(0, y, (logits.argmax(-1) == y).float())
        for k, row in enumerate(rows):
            row[name] = float(hit[k] / count[k]) if count[k] else None
    return rows


def never_predicted(bundle: ViewBundle) -> list[str]:
    """Classes present in the labels that no backbone predicts for any image: almost always a
    class name the text towers do not know (check ``--classnames`` and the templates)."""
    predicted = torch.zeros(len(bundle.classnames), dtype=torch.bool)
    for logits in bundle.logits:
        predicted[logits.argmax(-1).unique()] = True
    present = torch.bincount(bundle.labels, minlength=len(bundle.classnames)) > 0
    return [c for k, c in enumerate(bundle.classnames) if present[k] and not predicted[k]]
