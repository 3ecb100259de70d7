"""Name registry: build combiners from strings (CLI, saved ensembles), timm-style."""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from clipfuse.cascade.cascade import Cascade
from clipfuse.cascade.subset import SubsetNLC
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.calibration import CalibratedMean
from clipfuse.combiners.caruana import CaruanaSelection
from clipfuse.combiners.moe import MixtureOfExperts
from clipfuse.combiners.nlc import NLC
from clipfuse.combiners.safe import SafeMix
from clipfuse.combiners.semi import SemiShrunkMix
from clipfuse.combiners.shrunk_mix import ShrunkMix
from clipfuse.combiners.static import BestSingle, MajorityVote, MaxConfidence, MeanLogits, MeanProba
from clipfuse.combiners.super_learner import SuperLearner
from clipfuse.errors import FitError
from clipfuse.heads.stack import HEAD_COMBINERS

_REGISTRY: dict[str, type[Combiner]] = {
    cls.name: cls
    for cls in (
        BestSingle,
        MeanLogits,
        MeanProba,
        MajorityVote,
        MaxConfidence,
        CalibratedMean,
        SuperLearner,
        MixtureOfExperts,
        NLC,
        *HEAD_COMBINERS,  # lp, lp_mean, ..., tipf_nlc (clipfuse.heads)
        Cascade,
        SubsetNLC,
        ShrunkMix,
        SemiShrunkMix,
        SafeMix,
        CaruanaSelection,
    )
}


# The method `clipfuse fit` uses without --method and `evaluate --methods recommended` runs
# (why: README "Fusion that beats the best backbone"; figures: BENCHMARKS.md "Fusion").
RECOMMENDED = "safe_mix"


def list_combiners(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, in a fixed order (baselines first)."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def combiner_class(name: str) -> type[Combiner]:
    """The class registered under ``name``; FitError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FitError(f"unknown combiner {name!r}; known: {', '.join(_REGISTRY)}") from None


def make_combiner(name: str, **params: Any) -> Combiner:
    """``make_combiner("nlc", steps=500)`` -> an unfitted combiner."""
    cls = combiner_class(name)
    return cls().set_params(**params)


def combiner_from_state(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor], *, device: str | None = None
) -> Combiner:
    """Rebuild any fitted combiner from its ``config()`` + ``state_dict()``."""
    return combiner_class(str(config.get("name"))).from_state(config, state_dict, device=device)
