"""Combiners: estimators that fuse per-backbone logits (static, Super Learner, MoE, NLC).

>>> from clipfuse.combiners import make_combiner
>>> nlc = make_combiner("nlc").fit(features, logits, y)      # hold-out, never test
>>> nlc.predict(features_test, logits_test)
"""

from clipfuse.combiners.base import Combiner
from clipfuse.combiners.gating import MixtureOfExperts
from clipfuse.combiners.nlc import NLC
from clipfuse.combiners.oracle import oracle_accuracy, oracle_correct
from clipfuse.combiners.pool import WeightedPool
from clipfuse.combiners.registry import (
    combiner_class,
    combiner_from_state,
    combiner_tier,
    expand_methods,
    list_combiners,
    make_combiner,
    method_groups,
    register_alias,
    register_combiner,
)
from clipfuse.combiners.static import (
    BestSingle,
    CalibratedMean,
    MajorityVote,
    MaxConfidence,
    MeanLogits,
    MeanProba,
    SuperLearner,
)

__all__ = [
    "NLC",
    "BestSingle",
    "CalibratedMean",
    "Combiner",
    "MajorityVote",
    "MaxConfidence",
    "MeanLogits",
    "MeanProba",
    "MixtureOfExperts",
    "SuperLearner",
    "WeightedPool",
    "combiner_class",
    "combiner_from_state",
    "combiner_tier",
    "expand_methods",
    "list_combiners",
    "make_combiner",
    "method_groups",
    "oracle_accuracy",
    "oracle_correct",
    "register_alias",
    "register_combiner",
]
