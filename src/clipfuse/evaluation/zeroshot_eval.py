"""Per-backbone zero-shot accuracy of a view, from cached features."""

from __future__ import annotations

from typing import Any

from clipfuse.evaluation.metrics import classification_metrics
from clipfuse.logits.bundle import ViewBundle


def zeroshot_table(bundle: ViewBundle) -> list[dict[str, Any]]:
    """One row per backbone: spec, top-1, top-5, mean per-class recall, sample count."""
    rows = []
    for name, spec, logits in zip(bundle.names, bundle.specs, bundle.logits):
        rows.append(
            {"backbone": name, "spec": spec, **classification_metrics(logits, bundle.labels)}
        )
    return rows
