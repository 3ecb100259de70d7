"""Zero-shot classifiers and logits from cached features; aligned fusion inputs per view."""

from clipfuse.logits.bundle import ViewBundle, load_bundle, resolve_view
from clipfuse.logits.zeroshot import text_classifier, zeroshot_logits

__all__ = ["ViewBundle", "load_bundle", "resolve_view", "text_classifier", "zeroshot_logits"]
