"""clipfuse: see how differently CLIP backbones see a dataset, and fuse them (NLC and more).

The public API, re-exported lazily (``import clipfuse`` imports neither torch nor open_clip;
each name loads its module on first use, as scikit-learn's top level does)::

    import clipfuse
    train, test = clipfuse.load_views(["zoo:rn-tiny", "zoo:vit-p4"],
                                      clipfuse.demo_source("cifar10"), store="store/")
    nlc = clipfuse.make_combiner("nlc").fit(*train.holdout(shots=4, seed=0).fusion_inputs())
    nlc.score(*test.fusion_inputs())

Errors a user can cause are ``ClipfuseError`` subclasses with a one-line message.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from clipfuse.errors import (
    BackboneError,
    ClipfuseError,
    DataError,
    FitError,
    NotFittedError,
    ProvenanceMismatchError,
    StoreError,
)

try:
    __version__ = version("clipfuse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it (and the attribute there, when it differs)
_LAZY: dict[str, tuple[str, str]] = {
    # backbones and data
    "Backbone": ("clipfuse.backbones", "Backbone"),
    "load_backbone": ("clipfuse.backbones", "load_backbone"),
    "list_backbones": ("clipfuse.backbones", "list_backbones"),
    "ImageDataset": ("clipfuse.data", "ImageDataset"),
    "open_dataset": ("clipfuse.data", "open_dataset"),
    "list_datasets": ("clipfuse.data", "list_datasets"),
    "demo_source": ("clipfuse.demo", "demo_source"),
    # extraction, store, views
    "extract": ("clipfuse.extraction", "extract"),
    "FeatureStore": ("clipfuse.store", "FeatureStore"),
    "ViewBundle": ("clipfuse.logits", "ViewBundle"),
    "load_views": ("clipfuse.logits.views", "load_views"),
    "open_view": ("clipfuse.logits.views", "open_view"),
    "HoldoutDraw": ("clipfuse.data.holdout", "HoldoutDraw"),
    "draw_holdout": ("clipfuse.data.holdout", "draw_holdout"),
    # combiners
    "Combiner": ("clipfuse.combiners", "Combiner"),
    "make_combiner": ("clipfuse.combiners", "make_combiner"),
    "list_combiners": ("clipfuse.combiners", "list_combiners"),
    "register_combiner": ("clipfuse.combiners", "register_combiner"),
    "method_groups": ("clipfuse.combiners", "method_groups"),
    "check_combiner": ("clipfuse.testing", "check_combiner"),
    # ensembles
    "Ensemble": ("clipfuse.ensemble", "SavedEnsemble"),
    "SavedEnsemble": ("clipfuse.ensemble", "SavedEnsemble"),
    "fit_ensemble": ("clipfuse.ensemble", "fit_ensemble"),
    "describe_fit": ("clipfuse.ensemble", "describe_fit"),
    "load_ensemble": ("clipfuse.ensemble", "load_ensemble"),
    "predict_images": ("clipfuse.ensemble", "predict_images"),
    # evaluation, analysis, reports
    "EvaluationResult": ("clipfuse.evaluation", "EvaluationResult"),
    "evaluate_methods": ("clipfuse.evaluation", "evaluate_methods"),
    "write_results": ("clipfuse.evaluation", "write_results"),
    "analyze_view": ("clipfuse.analysis", "analyze_view"),
    "analyze_complementarity": ("clipfuse.analysis", "analyze_complementarity"),
    "cka_matrix": ("clipfuse.analysis", "cka_matrix"),
    "write_report": ("clipfuse.reports", "write_report"),
    "run_demo": ("clipfuse.demo", "run_demo"),
}

__all__ = [
    "BackboneError",
    "ClipfuseError",
    "DataError",
    "FitError",
    "NotFittedError",
    "ProvenanceMismatchError",
    "StoreError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'clipfuse' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from clipfuse.analysis import analyze_complementarity, analyze_view, cka_matrix
    from clipfuse.backbones import Backbone, list_backbones, load_backbone
    from clipfuse.combiners import (
        Combiner,
        list_combiners,
        make_combiner,
        method_groups,
        register_combiner,
    )
    from clipfuse.data import ImageDataset, list_datasets, open_dataset
    from clipfuse.data.holdout import HoldoutDraw, draw_holdout
    from clipfuse.demo import demo_source, run_demo
    from clipfuse.ensemble import (
        SavedEnsemble,
        describe_fit,
        fit_ensemble,
        load_ensemble,
        predict_images,
    )
    from clipfuse.ensemble import SavedEnsemble as Ensemble
    from clipfuse.evaluation import EvaluationResult, evaluate_methods, write_results
    from clipfuse.extraction import extract
    from clipfuse.logits import ViewBundle
    from clipfuse.logits.views import load_views, open_view
    from clipfuse.reports import write_report
    from clipfuse.store import FeatureStore
    from clipfuse.testing import check_combiner
