"""The FastAPI app: POST /v1/classify, GET /healthz, /readyz, /metrics, and /docs (Swagger UI
served from the `fastapi-offline` package's assets, so it works without internet).

A request is read (size-limited), decoded and preprocessed in a worker thread of the event
loop's pool, then queued for the micro-batcher, whose single model thread runs `fuse_pixels`,
the same core as `clipfuse predict`: the answers are the same. Bad images follow the policy of
`clipfuse.data.image_failures`: the good ones of a request are answered and the bad ones listed
in ``failures`` with their kind; a request with no good image is refused (4xx, the first kind).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from clipfuse.ensemble.predict import Fused, fuse_pixels, preprocess_images
from clipfuse.ensemble.saved import SavedEnsemble
from clipfuse.errors import ClipfuseError
from clipfuse.serve.batching import MicroBatcher
from clipfuse.serve.decoding import (
    Limits,
    Payload,
    RequestError,
    bomb_warnings_are_errors,
    decode_image,
    json_payloads,
    media_type,
    multipart_payloads,
    read_body,
)
from clipfuse.serve.metrics import Metrics, MetricsMiddleware

CLASSIFY_DOC = """Classify one or more images. Send either a multipart form with one or more
`file` parts, one raw image body with an `image/*` content type, or JSON
`{"images": ["<base64>", ...]}`. Each prediction has the fields of one item of
`clipfuse predict --json` plus `backbones` (those that ran); `timing` is the server's.
`?top_k=K` asks for the K most probable classes (default: the server's `--top-k`). An image
that cannot be decoded does not fail the others: it is listed in `failures` with its `kind`
(as `clipfuse predict` lists it); only a request with no readable image is refused."""

TOP_K_PARAMETER = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},
    "description": "how many of the most probable classes each prediction lists",
}


REQUEST_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "byte"}}
                    },
                }
            },
        },
    }
}


def request_top_k(raw: str | None, default: int) -> int:
    """``?top_k=`` as a positive integer (the default when absent), or a 400 RequestError."""
    if raw is None:
        return default
    value = raw.strip()
    if not value.isdigit() or int(value) < 1:
        raise RequestError("bad_parameter", f"top_k must be a positive integer; got {raw!r}")
    return int(value)


def check_servable(ensemble: SavedEnsemble) -> None:
    """ClipfuseError for a transductive ensemble: the micro-batcher would let one client's
    answer depend on other clients' images."""
    if ensemble.combiner.transductive:
        raise ClipfuseError(
            f"{ensemble.combiner.name} is transductive (an answer depends on the other images "
            "batched with it) and cannot be served; use `clipfuse predict --transductive`"
        )


def create_app(
    ensemble: SavedEnsemble,
    backbones: dict[int, Any],
    *,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    limits: Limits | None = None,
    top_k: int = 1,
    warm: bool = True,
) -> FastAPI:
    """An app serving `ensemble` with its loaded `backbones` ({position: Backbone}); a
    transductive ensemble is refused (the micro-batcher would mix clients' images)."""
    check_servable(ensemble)
    limits = limits or Limits()
    bomb_warnings_are_errors()
    names = [rec["name"] for rec in ensemble.backbones]
    staged = ensemble.combiner.supports_staged
    order = [int(b) for b in ensemble.combiner.required_backbones()]  # a cascade's run order
    metrics = Metrics([names[b] for b in backbones])
    state: dict[str, Any] = {"ready": False}

    def ran(record: dict[str, Any]) -> list[str]:
        chosen = order[: record["backbones_run"]] if staged else list(backbones)
        return [names[b] for b in chosen]

    def run_batch(pixels) -> list[Fused]:
        return fuse_pixels(ensemble, backbones, pixels).rows()  # each request picks its top_k

    def warm_up() -> None:
        gray = Image.new("RGB", (64, 64), (128, 128, 128))
        run_batch(preprocess_images(backbones, [gray]))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = MicroBatcher(run_batch, max_batch, max_wait_ms, metrics.batch_images.observe)
        batcher.start()
        state["batcher"] = batcher

        async def get_ready():
            if warm:
                await batcher.in_model_thread(warm_up)
            state["ready"] = True
            metrics.ready.set(1)

        warming = asyncio.get_running_loop().create_task(get_ready())
        try:
            yield
        finally:
            warming.cancel()
            await batcher.close()

    app = FastAPIOffline(
        title="clipfuse",
        redoc_url=None,
        summary=f"{ensemble.combiner.name} ensemble of {', '.join(names)} ({len(ensemble.classnames)} classes)",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def refuse(kind: str, message: str, status: int) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message, "kind": kind}, status_code=status)

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, exc: RequestError):
        return refuse(exc.kind, str(exc), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return refuse(kind, str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception):
        message = " ".join(f"internal error: {type(exc).__name__}: {exc}".split())[:300]
        return refuse("internal", message, 500)

    async def payloads_of(request: Request) -> list[Payload]:
        try:
            body = await read_body(
                request.stream(), request.headers.get("content-length"), limits.max_upload_bytes
            )
        except ClientDisconnect:
            raise RequestError("client_disconnected", "the client went away mid-body") from None
        kind = media_type(request.headers.get("content-type"))
        if not body:
            raise RequestError("empty_body", "the request body is empty")
        if kind == "multipart/form-data":
            return await multipart_payloads(request.headers, body, limits)
        if kind == "application/json":
            return json_payloads(body, limits)
        if kind.startswith("image/"):
            return [Payload("0", body)]
        raise RequestError(
            "unsupported_media_type",
            f"content type {kind or '(none)'!r}: send multipart/form-data, image/* or application/json",
        )

    def prepare(payloads: list[Payload]):
        """(good payloads, their pixels, failure records); with no good one, the first error."""
        good, images, errors = [], [], []
        for p in payloads:
            try:
                images.append(decode_image(p, limits))
                good.append(p)
            except RequestError as exc:
                errors.append((p, exc))
        if not good:
            raise errors[0][1]
        failures = [{"image": p.name, "kind": e.kind, "error": str(e)} for p, e in errors]
        return good, preprocess_images(backbones, images), failures

    @app.post(
        "/v1/classify",
        description=CLASSIFY_DOC,
        openapi_extra={**REQUEST_BODY_DOC, "parameters": [TOP_K_PARAMETER]},
    )
    async def classify(request: Request) -> dict[str, Any]:
        start = time.perf_counter()
        k = request_top_k(request.query_params.get("top_k"), top_k)
        batcher: MicroBatcher = state["batcher"]
        with batcher.expecting():
            payloads = await payloads_of(request)
            good, pixels, failures = await anyio.to_thread.run_sync(prepare, payloads)
        decoded = time.perf_counter()
        rows, timing = await batcher.submit(pixels)
        records = Fused.cat(rows).records(ensemble, k)
        predictions = [
            {"image": p.name, **record, "backbones": ran(record)}
            for p, record in zip(good, records)
        ]
        for failure in failures:
            metrics.errors.labels(failure["kind"]).inc()
        metrics.images.inc(len(predictions))
        for record in predictions:
            for name in record["backbones"]:
                metrics.backbone_runs.labels(name).inc()
        timing = {
            "decode_ms": 1000 * (decoded - start),
            **timing,
            "total_ms": 1000 * (time.perf_counter() - start),
        }
        return {"predictions": predictions, "failures": failures, "timing": timing}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process answers (the orchestrator's liveness probe)."""
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz():
        """The model is loaded and has run once (the readiness probe); 503 before that."""
        if not state["ready"]:
            return JSONResponse({"status": "warming up"}, status_code=503)
        return {"status": "ready", "method": ensemble.combiner.name, "backbones": [names[b] for b in backbones]}  # fmt: skip

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
