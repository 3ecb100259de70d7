"""On-disk cache of per-(dataset view, backbone) image features, crash-safe and shared by processes.

Entries are float16 safetensors shards written atomically plus a JSON provenance manifest; reads are
memory-mapped. This package imports numpy, safetensors and filelock only (never torch).
"""

from clipfuse.store.entry import EntryData, StoreEntry
from clipfuse.store.feature_store import ArraySet, FeatureStore
from clipfuse.store.keys import EntryKey

__all__ = ["ArraySet", "EntryData", "EntryKey", "FeatureStore", "StoreEntry"]
