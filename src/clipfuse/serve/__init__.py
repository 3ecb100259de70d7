"""Serve a saved ensemble over HTTP: FastAPI + uvicorn, one model in memory, requests from many
clients micro-batched into one model thread, Prometheus metrics, safe image decoding.

Needs the `serve` extra (`pip install "clipfuse[serve]"`); the rest of clipfuse does not.
"""

from __future__ import annotations

SERVE_MODULES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client",
    "multipart": "python-multipart",
    "fastapi_offline": "fastapi-offline",  # Swagger UI assets: /docs works offline
}


def missing_serve_deps() -> list[str]:
    """Distribution names of the serving stack that cannot be imported here."""
    import importlib.util

    return [dist for mod, dist in SERVE_MODULES.items() if importlib.util.find_spec(mod) is None]
