"""What a backbone was built from: the files hashed while building it (weights, configs, image
processor, tokenizer) and the versions of the libraries that turn them into a model.

Recorded in the store's backbone-info, so a later run can tell that a backbone is unchanged by
re-hashing those files (memoised by path, size and mtime: a stat each) instead of building the
model again: a no-op `extract` then costs no model and no open_clip import (issue 23).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipfuse.hashing import file_sha256, installed_versions

MODEL_PACKAGES = ("clipfuse", "torch", "open_clip_torch", "timm", "transformers")


def built_from(files: dict[str, str]) -> dict[str, Any]:
    """The record for a backbone built from `files` ({path: sha256}) with today's libraries."""
    return {"files": dict(sorted(files.items())), "versions": installed_versions(MODEL_PACKAGES)}


def still_built_from(record: dict[str, Any] | None) -> bool:
    """Would building the backbone now use the very same files and libraries? False when the
    record is absent or empty (older stores): then the model must be built to know."""
    if not record or not record.get("files"):
        return False
    if record.get("versions") != installed_versions(MODEL_PACKAGES):
        return False
    for path, digest in record["files"].items():
        if not Path(path).is_file() or file_sha256(path) != digest:
            return False
    return True
