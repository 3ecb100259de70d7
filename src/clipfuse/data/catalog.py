"""One registry of datasets: class names and prompt templates by dataset name.

Sources say where images are; the catalog says what their classes are called and how CLIP
prompts them (the CLIP / CLIP_benchmark per-dataset template sets, shipped in templates.json).
"""

from __future__ import annotations

import fnmatch
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from clipfuse.errors import DataError

_TEMPLATES_FILE = Path(__file__).with_name("templates.json")

CLASSNAMES: dict[str, list[str]] = {
    "cifar10": [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ],
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}

# substrings of a source path that identify a known dataset (checked in order)
_NAME_HINTS = [
    ("fashion", "fashion-mnist"),
    ("mnist", "mnist"),
    ("cifar100", "cifar100"),
    ("cifar10", "cifar10"),
    ("imagenet", "imagenet1k"),
]


@lru_cache(maxsize=1)
def _templates() -> dict[str, list[str]]:
    data = json.loads(_TEMPLATES_FILE.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def list_datasets(pattern: str = "*") -> list[str]:
    """Dataset names with known templates or class names."""
    names = sorted(set(_templates()) | set(CLASSNAMES))
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def guess_name(source_path: str) -> str | None:
    lowered = source_path.lower().replace("_", "-")
    for hint, name in _NAME_HINTS:
        if hint in lowered:
            return name
    return None


def known_classnames(name: str | None) -> list[str] | None:
    if name == "imagenet1k":
        from open_clip import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)
    return list(CLASSNAMES[name]) if name in CLASSNAMES else None


def templates_for(name: str | None) -> list[str]:
    """The dataset's template set, or CLIP's plain "a photo of a {c}." for unknown datasets."""
    if name == "imagenet1k":
        from open_clip import OPENAI_IMAGENET_TEMPLATES

        return [t("{c}") for t in OPENAI_IMAGENET_TEMPLATES]
    return list(_templates().get(name or "", ["a photo of a {c}."]))


def _list_file(path: str | Path, what: str) -> Any:
    """A JSON value, or the file's non-empty lines when it is not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {str(path)!r}")
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        return [line.strip() for line in text.splitlines() if line.strip()]


def load_templates_file(path: str | Path) -> list[str]:
    """A custom templates file: JSON list of strings with "{c}", or one template per line."""
    templates = _list_file(path, "templates")
    if not isinstance(templates, list) or not templates or not all(
        isinstance(t, str) and "{c}" in t for t in templates
    ):
        raise DataError(f"templates file {str(path)!r} must hold templates containing '{{c}}'")
    return templates


def load_classnames_file(path: str | Path) -> list[str]:
    """One class name per line (CLIP_benchmark's classnames.txt), or a JSON list."""
    names = _list_file(path, "class names")
    if not isinstance(names, list) or not names:
        raise DataError(f"class names file {str(path)!r} is empty or malformed")
    return [str(n) for n in names]
