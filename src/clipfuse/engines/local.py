"""The default engine: this process, the decode-once DataLoader pipeline of `clipfuse.extraction`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clipfuse.engines.base import Engine, R, T
from clipfuse.extraction.engine import extract


class LocalEngine(Engine):
    """Runs everything here; `extract` is `clipfuse.extraction.extract` itself."""

    name = "local"

    def extract(self, backbones, dataset, store, options=None, **kwargs) -> Any:
        return extract(backbones, dataset, store, options, **kwargs)

    def map(self, fn: Callable[[Any, T], R], items: Sequence[T], shared: Any = None) -> list[R]:
        return [fn(shared, item) for item in items]
