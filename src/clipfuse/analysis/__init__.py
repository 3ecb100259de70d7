"""Complementarity of backbones: accuracy, oracle, agreement, error overlap, diversity, CKA.

All functions take the "Fusion inputs" of ARCHITECTURE.md (tensors or numpy arrays/memmaps)
and read large inputs in chunks, so memory stays bounded.
"""

from clipfuse.analysis.agreement import (
    agreement_matrix,
    correct_set_intersections,
    correctness,
    error_overlap_matrix,
    mean_pairwise_disagreement,
    oracle_from_correct,
    per_backbone_accuracy,
    unique_correct,
)
from clipfuse.analysis.cka import CKAResult, cka_matrix, linear_cka, unbiased_hsic_matrix
from clipfuse.analysis.complementarity import (
    ComplementarityAccumulator,
    ComplementarityResult,
    analyze_complementarity,
    complementarity_from_predictions,
)
from clipfuse.analysis.correlation import DiversityGainCorrelation, diversity_gain_correlation
from clipfuse.analysis.divergence import pairwise_js_divergence
from clipfuse.analysis.view import analyze_view

__all__ = [
    "analyze_view",
    "CKAResult",
    "ComplementarityAccumulator",
    "ComplementarityResult",
    "DiversityGainCorrelation",
    "agreement_matrix",
    "analyze_complementarity",
    "cka_matrix",
    "complementarity_from_predictions",
    "correct_set_intersections",
    "correctness",
    "diversity_gain_correlation",
    "error_overlap_matrix",
    "linear_cka",
    "mean_pairwise_disagreement",
    "oracle_from_correct",
    "pairwise_js_divergence",
    "per_backbone_accuracy",
    "unbiased_hsic_matrix",
    "unique_correct",
]
