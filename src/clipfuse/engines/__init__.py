"""Engines: where extraction and evaluation run (`local`: this process; `ray`: a Ray cluster).

`get_engine` lives here, above the engine modules, so that `base` imports none of them.
"""

from typing import Any

from clipfuse.engines.base import ENGINES, Engine, EngineError

__all__ = ["ENGINES", "Engine", "EngineError", "get_engine"]


def get_engine(name: str = "local", address: str | None = None, **options: Any) -> Engine:
    """The engine called `name`; `address` (Ray only) is `auto`, `HOST:PORT` or `ray://HOST:PORT`."""
    if name == "local":
        if address is not None:
            raise EngineError("--ray-address needs --engine ray")
        from clipfuse.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from clipfuse.engines.ray import RayEngine

        return RayEngine(address=address, **options)
    raise EngineError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
