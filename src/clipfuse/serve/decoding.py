"""Untrusted request bodies -> decoded RGB images, or a `RequestError` with a stable kind.

Everything a client sends is bytes: nothing here opens a path. Decoding refuses what could take
the server down: bodies over the size limit (counted while reading, so at most the limit is ever
buffered), more images than allowed, images whose header promises more pixels than allowed
(decompression bombs, checked before any pixel is decoded; PIL's own bomb warning is an error
here too, see `bomb_warnings_are_errors`), truncated or corrupt files, and formats outside a small list of common ones.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from clipfuse.data.image_failures import failure_kind
from clipfuse.errors import ClipfuseError

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")  # what `clipfuse predict` reads
DRAIN_FACTOR = 4  # an oversize body is read on (not kept) up to this many limits, then cut off

# kind -> HTTP status; the kinds are stable: clients and /metrics key on them
KINDS = {
    "empty_body": 400,
    "bad_json": 400,
    "bad_base64": 400,
    "bad_multipart": 400,
    "bad_parameter": 400,  # a query parameter out of range (?top_k=0)
    "no_images": 400,
    "not_an_image": 415,
    "unsupported_media_type": 415,
    "payload_too_large": 413,
    "too_many_images": 413,
    "decompression_bomb": 413,
    "truncated_image": 422,
    "corrupt_image": 422,
    "client_disconnected": 400,  # nobody reads this answer; counted in /metrics
}


class RequestError(ClipfuseError):
    """A request the server refuses: one line, a stable `kind`, a 4xx status."""

    def __init__(self, kind: str, message: str):
        super().__init__(" ".join(message.split())[:300])
        self.kind = kind
        self.status = KINDS[kind]


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024
    max_images: int = 64
    max_pixels: int = 40_000_000  # width x height of one image (a 40-megapixel photo)


@dataclass(frozen=True)
class Payload:
    name: str  # the client's file name or the image's position; echoed, never opened
    data: bytes
    error: RequestError | None = None  # why these bytes are no image (bad base64)


async def read_body(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (a too large Content-Length is
    refused before anything is read). Past the limit the rest is read and dropped, up to
    DRAIN_FACTOR limits, so that the client gets the 413 instead of a reset connection."""
    too_large = RequestError(
        "payload_too_large", f"request body over the limit of {limit} bytes (--max-upload-mb)"
    )
    if declared is not None and declared.strip().isdigit() and int(declared) > DRAIN_FACTOR * limit:
        raise too_large
    kept: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > DRAIN_FACTOR * limit:
            break
        if total <= limit:
            kept.append(chunk)
    if total > limit:
        raise too_large
    return b"".join(kept)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def json_payloads(body: bytes, limits: Limits) -> list[Payload]:
    """`{"images": ["<base64>", ...]}` (data: URLs accepted) -> payloads."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("bad_json", f"body is not JSON ({exc})") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not all(isinstance(s, str) for s in images):
        raise RequestError("bad_json", 'expected a JSON object {"images": ["<base64>", ...]}')
    check_count(len(images), limits)
    payloads = []
    for k, text in enumerate(images):
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        try:
            payloads.append(Payload(str(k), base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError) as exc:  # this image fails, not the request
            error = RequestError("bad_base64", f"images[{k}] is not valid base64 ({exc})")
            payloads.append(Payload(str(k), b"", error))
    return payloads


def check_count(n: int, limits: Limits) -> None:
    if n == 0:
        raise RequestError("no_images", "the request holds no image")
    if n > limits.max_images:
        raise RequestError(
            "too_many_images",
            f"{n} images in one request; at most {limits.max_images} (--max-images)",
        )


def bomb_warnings_are_errors() -> None:
    """PIL warns (and decodes anyway) between MAX_IMAGE_PIXELS and twice that; a server must
    refuse. Set once per process: `warnings.catch_warnings` per image would not be thread-safe,
    and images are decoded in several threads at once."""
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def decode_image(payload: Payload, limits: Limits) -> Image.Image:
    """Bytes -> RGB image exactly as `clipfuse predict` decodes a file, or a RequestError."""
    where = f"image {payload.name!r}"
    if payload.error is not None:
        raise payload.error
    if not payload.data:
        raise RequestError("not_an_image", f"{where} is empty")
    try:
        image = Image.open(io.BytesIO(payload.data), formats=FORMATS)
        width, height = image.size
        if width * height > limits.max_pixels:
            raise RequestError(
                "decompression_bomb",
                f"{where} is {width}x{height} pixels, over the limit of {limits.max_pixels} (--max-pixels)",
            )
        image.load()
        return image.convert("RGB")
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError("decompression_bomb", f"{where} refused: {exc}") from None
    except UnidentifiedImageError:
        raise RequestError(
            "not_an_image", f"{where} is not an image in a supported format ({', '.join(FORMATS)})"
        ) from None
    except OSError as exc:
        kind = failure_kind(type(exc).__name__, str(exc))  # the kinds `clipfuse predict` lists
        raise RequestError(kind, f"{where} cannot be decoded ({exc})") from None
    except Exception as exc:  # PIL plugins raise many types on hostile input; all are the client's
        raise RequestError(
            "corrupt_image", f"{where} cannot be decoded ({type(exc).__name__}: {exc})"
        ) from None


async def multipart_payloads(headers, body: bytes, limits: Limits) -> list[Payload]:
    """The `file` parts of a multipart/form-data body, in order (other fields are ignored)."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    parser = MultiPartParser(
        headers, stream(), max_files=limits.max_images, max_fields=limits.max_images
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        kind = "too_many_images" if "too many" in str(exc).lower() else "bad_multipart"
        raise RequestError(kind, f"multipart body refused: {exc}") from None
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise RequestError("bad_multipart", f"malformed multipart body ({exc})") from None
    payloads = []
    try:
        for key, value in form.multi_items():
            if key != "file":
                continue
            name = str(len(payloads))
            if isinstance(value, str):
                payloads.append(Payload(name, value.encode()))
            else:
                payloads.append(Payload(value.filename or name, await value.read()))
    finally:
        await form.close()
    if not payloads:
        raise RequestError("no_images", "the multipart body has no `file` part")
    check_count(len(payloads), limits)
    return payloads
