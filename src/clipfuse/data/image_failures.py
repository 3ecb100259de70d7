"""One failure policy for bad images, shared by `clipfuse predict`, `SavedEnsemble.predict` and
`clipfuse serve`.

A bad image never takes the good ones down with it: it is skipped and listed as
``{"image", "kind", "error"}`` beside the answers for the others (`predict` prints it on stderr
and in ``--json``'s ``failures``; the server returns it in the 200 answer's ``failures``). Only
when no image at all could be read is the whole call refused: `predict` exits 2, the server
answers 4xx JSON with the first failure's kind. The kinds are the server's stable error kinds,
so a client sees the same word for the same broken file whichever way it sent it.
"""

from __future__ import annotations

from typing import Any


def failure_kind(error_type: str, message: str = "") -> str:
    """The stable kind of an image that failed with exception type `error_type` and `message`."""
    if error_type == "UnidentifiedImageError":
        return "not_an_image"
    if error_type.startswith("DecompressionBomb"):
        return "decompression_bomb"
    if error_type in ("FileNotFoundError", "PermissionError", "IsADirectoryError"):
        return "unreadable_file"
    if "truncated" in message.lower():
        return "truncated_image"
    return "corrupt_image"


def failure_record(image: str, error: str) -> dict[str, Any]:
    """A failure listed beside the predictions; `error` reads ``"<ExceptionType>: <message>"``."""
    error_type, _, message = error.partition(": ")
    return {"image": image, "kind": failure_kind(error_type, message), "error": error}
