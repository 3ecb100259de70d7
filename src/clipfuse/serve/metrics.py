"""Prometheus metrics of one server (own registry: two apps in one process do not collide)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from clipfuse.serve.decoding import KINDS

ENDPOINTS = ("/v1/classify", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
EXTRA_KINDS = ("not_found", "method_not_allowed", "http_error", "internal")


class Metrics:
    def __init__(self, backbone_names: list[str]):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("clipfuse_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)  # fmt: skip
        self.images = Counter("clipfuse_images", "images classified", registry=r)
        self.errors = Counter("clipfuse_errors", "requests refused or failed, by kind", ["kind"], registry=r)  # fmt: skip
        self.latency = Histogram(
            "clipfuse_request_latency_seconds", "time to answer a request", ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )  # fmt: skip
        self.batch_images = Histogram(
            "clipfuse_batch_images", "images per model call", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )  # fmt: skip
        self.backbone_runs = Counter(
            "clipfuse_backbone_runs", "images encoded, per backbone", ["backbone"], registry=r
        )
        self.ready = Gauge("clipfuse_ready", "1 once the model is loaded and warmed", registry=r)
        for kind in (*KINDS, *EXTRA_KINDS):
            self.errors.labels(kind)  # every kind is listed from the start, at 0
        for name in backbone_names:
            self.backbone_runs.labels(name)


class MetricsMiddleware:
    """Pure ASGI: counts every response by endpoint and status and times it (the body stream
    is passed through untouched, so size limits still apply while reading)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
