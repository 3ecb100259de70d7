"""Both analyses of one view at once: how the backbones' predictions and representations differ."""

from __future__ import annotations

from typing import Any

from clipfuse.analysis.cka import CKAResult, cka_matrix
from clipfuse.analysis.complementarity import ComplementarityResult, analyze_complementarity


def analyze_view(bundle: Any, *, cka: str = "auto") -> tuple[ComplementarityResult, CKAResult]:
    """(complementarity of the zero-shot predictions, linear CKA of the features) of a
    ViewBundle -- what ``clipfuse analyze`` computes per dataset."""
    comp = analyze_complementarity(bundle.logits, bundle.labels, bundle.names)
    return comp, cka_matrix(bundle.features, bundle.names, method=cka)
