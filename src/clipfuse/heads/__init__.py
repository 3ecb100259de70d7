"""Per-backbone heads (linear probe, zero-shot-initialised probe, Tip-Adapter, Tip-Adapter-F)
and combiners over them.

>>> from clipfuse.combiners import make_combiner
>>> lp_nlc = make_combiner("lp_nlc").fit(features, logits, y)   # k-shot hold-out, never test
>>> lp_nlc.predict(features_test, logits_test)
"""

from clipfuse.heads.base import HeadBank
from clipfuse.heads.linear import LinearProbeHeads, fit_logistic
from clipfuse.heads.stack import HEAD_COMBINERS, HEAD_KINDS, HeadStack
from clipfuse.heads.tip import TipAdapterFHeads, TipAdapterHeads, cache_logits, loo_search
from clipfuse.heads.zeroshot_probe import ZeroShotProbeHeads

HEAD_COMBINER_NAMES: tuple[str, ...] = tuple(cls.name for cls in HEAD_COMBINERS)

__all__ = [
    "HEAD_COMBINERS",
    "HEAD_COMBINER_NAMES",
    "HEAD_KINDS",
    "HeadBank",
    "HeadStack",
    "LinearProbeHeads",
    "TipAdapterFHeads",
    "TipAdapterHeads",
    "ZeroShotProbeHeads",
    "cache_logits",
    "fit_logistic",
    "loo_search",
]
