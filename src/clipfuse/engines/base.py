"""The engine contract: one interface for running clipfuse's work in this process or on a cluster.

An engine does two things. `extract` fills a feature store exactly as `clipfuse.extraction.extract`
does (same entries, manifests, shard names and bytes), so a store begun by one engine is resumed,
skipped or read by any other. `map` runs independent jobs (evaluation draws) and returns their
results in input order, so a fanned-out evaluation equals the serial one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from clipfuse.backbones.backbone import Backbone
from clipfuse.data.dataset import ImageDataset
from clipfuse.errors import ClipfuseError
from clipfuse.extraction.engine import ExtractionReport
from clipfuse.extraction.options import ExtractOptions
from clipfuse.store import FeatureStore

T = TypeVar("T")
R = TypeVar("R")
ENGINES = ("local", "ray")


class EngineError(ClipfuseError):
    """An engine cannot run: Ray not installed, a cluster that cannot be reached, a failed job."""


class Engine(ABC):
    """Where extraction and evaluation run. `local` is this process; `ray` a Ray cluster."""

    name: str = "engine"

    @abstractmethod
    def extract(
        self,
        backbones: Sequence[Backbone],
        dataset: ImageDataset,
        store: FeatureStore,
        options: ExtractOptions | None = None,
        **kwargs: Any,
    ) -> ExtractionReport:
        """Write every missing shard of every backbone's entry; a complete store is a no-op.
        ``options`` or its fields as keywords (``ExtractOptions.of``); ``threads``: intra-op
        CPU threads per encoder (None: the engine's default)."""

    @abstractmethod
    def map(self, fn: Callable[[Any, T], R], items: Sequence[T], shared: Any = None) -> list[R]:
        """`[fn(shared, item) for item in items]`, possibly in parallel; `shared` is sent once."""

    def close(self) -> None:
        """Release what the engine started (a local Ray instance); connections it joined stay."""
        return None  # the local engine holds nothing

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
