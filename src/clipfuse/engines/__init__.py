"""Engines: where extraction and evaluation run (`local`: this process; `ray`: a Ray cluster)."""

from clipfuse.engines.base import ENGINES, Engine, EngineError, get_engine

__all__ = ["ENGINES", "Engine", "EngineError", "get_engine"]
