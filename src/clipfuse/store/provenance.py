"""Compare an entry's recorded provenance with a new request, naming the first field that differs.

Provenance is normalised through JSON first (tuples become lists, keys become strings), so a value
compares equal to what was written to ``manifest.json`` and read back.
"""

from __future__ import annotations

import json
from typing import Any

_MISSING = object()


def normalise(obj: Any) -> Any:
    """The value as it will read back from JSON; raises ``ValueError`` if it is not JSON-serialisable."""
    try:
        return json.loads(json.dumps(obj, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"provenance must be JSON-serialisable: {exc}") from exc


def _short(value: Any) -> str:
    if value is _MISSING:
        return "<absent>"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def first_difference(stored: Any, given: Any, path: str) -> tuple[str, str, str] | None:
    """``(field path, stored value, given value)`` of the first difference, or ``None`` if equal.

    Dict keys are visited in sorted order and lists by position, so the answer is deterministic.
    """
    if isinstance(stored, dict) and isinstance(given, dict):
        for key in sorted(set(stored) | set(given)):
            found = first_difference(
                stored.get(key, _MISSING), given.get(key, _MISSING), f"{path}.{key}"
            )
            if found is not None:
                return found
        return None
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        for i, (a, b) in enumerate(zip(stored, given)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if (
        stored is _MISSING
        or given is _MISSING
        or type(stored) is not type(given)
        or stored != given
    ):
        return path, _short(stored), _short(given)
    return None
