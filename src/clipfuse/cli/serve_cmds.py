"""serve: a saved ensemble over HTTP (FastAPI + uvicorn, micro-batched)."""

from __future__ import annotations

from clipfuse.cli.common import command, parsers
from clipfuse.errors import ClipfuseError


@parsers
def add_parsers(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a saved ensemble over HTTP: POST /v1/classify, /healthz, /readyz, /metrics, /docs",
    )
    p.add_argument("ensemble", help="file written by `clipfuse fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one, printed)")
    p.add_argument("--max-batch", type=int, default=32, help="images per model call at most")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the first request of a batch waits for others to join it",
    )
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="request body size limit")
    p.add_argument("--max-images", type=int, default=64, help="images per request at most")
    p.add_argument(
        "--max-pixels", type=int, default=40_000_000, help="width x height of one image at most"
    )
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--log-level", default="warning", help="uvicorn's log level")


@command("serve")
def cmd_serve(args) -> int:
    from clipfuse.serve import missing_serve_deps

    missing = missing_serve_deps()
    if missing:
        raise ClipfuseError(
            f'`clipfuse serve` needs {", ".join(missing)}: pip install "clipfuse[serve]"'
        )
    # integer counts are checked at parse time (cli.validate.harden); the floats here
    checks = [("--max-upload-mb", args.max_upload_mb, 1e-6), ("--max-wait-ms", args.max_wait_ms, 0)]
    for flag, value, least in checks:
        if value < least:
            raise ClipfuseError(f"{flag} must be at least {least:g}; got {value:g}")
    if not 0 <= args.port <= 65535:
        raise ClipfuseError(f"--port must be 0..65535; got {args.port}")

    from clipfuse.ensemble.predict import load_needed
    from clipfuse.ensemble.saved import SavedEnsemble
    from clipfuse.serve.app import check_servable, create_app
    from clipfuse.serve.decoding import Limits
    from clipfuse.serve.runner import bind, serve_forever, url_of

    ensemble = SavedEnsemble.load(args.ensemble, device=args.device)
    check_servable(ensemble)  # before loading any backbone
    backbones = load_needed(ensemble, args.device)
    limits = Limits(int(args.max_upload_mb * 1024 * 1024), args.max_images, args.max_pixels)
    app = create_app(ensemble, backbones, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     limits=limits, top_k=args.top_k)  # fmt: skip
    sock = bind(args.host, args.port)
    url = url_of(sock)
    print(f"clipfuse serve: {args.ensemble} ({ensemble.combiner.name}) on {url}  "
          f"(docs {url}/docs, max batch {args.max_batch}, max wait {args.max_wait_ms:g} ms)", flush=True)  # fmt: skip
    serve_forever(app, sock, args.log_level)
    return 0
