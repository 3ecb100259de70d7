"""Name registry: build combiners from strings (CLI, saved ensembles), timm-style.

Registration is inverted, as in timm's ``@register_model``: each combiner module decorates its
classes with ``@register_combiner(groups=...)``, and this module imports none of them, so it
cannot take part in an import cycle. The first lookup imports the modules listed in
``COMBINER_MODULES`` (by name, like timm's ``models/__init__`` star-imports), which fills the
table; a plugin module of one's own is registered the same way once imported.

Method groups (``core``, ``heads``, ``compute``, ...) are declared where a class is registered,
and ``--methods all`` means every registered name.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from clipfuse.errors import FitError

if TYPE_CHECKING:  # only for type hints: the registry imports no combiner at run time
    import torch

    from clipfuse.combiners.base import Combiner

# Import order is the listing order (baselines first); each module registers its own classes.
COMBINER_MODULES: tuple[str, ...] = (
    "clipfuse.combiners.static",
    "clipfuse.combiners.calibration",
    "clipfuse.combiners.super_learner",
    "clipfuse.combiners.moe",
    "clipfuse.combiners.nlc",
    "clipfuse.heads.stack",
    "clipfuse.cascade.cascade",
    "clipfuse.cascade.subset",
    "clipfuse.combiners.shrunk_mix",
    "clipfuse.combiners.semi",
    "clipfuse.combiners.confidence",
    "clipfuse.combiners.safe",
    "clipfuse.combiners.caruana",
    "clipfuse.combiners.nlc_residual",
    "clipfuse.combiners.transductive",
    "clipfuse.heads.zeroshot_stack",
    "clipfuse.combiners.nlc_learn",
    "clipfuse.combiners.select",
)

# The method `clipfuse fit` uses without --method and `evaluate --methods recommended` runs
# (why: docs/method.md "The recommended method: auto"; figures: BENCHMARKS.md "Task suite").
RECOMMENDED = "auto"

_REGISTRY: dict[str, type[Combiner]] = {}
_GROUPS: dict[str, list[str]] = {}
_loaded = False

C = TypeVar("C", bound=type)


def register_combiner(cls: C | None = None, *, groups: Iterable[str] = ()) -> C | Callable[[C], C]:
    """Register a Combiner class under its ``name`` (decorator, or a plain call for generated
    classes); ``groups`` adds the name to method groups such as ``core``."""

    def add(klass: C) -> C:
        name = klass.name
        if not name:
            raise TypeError(f"{klass.__name__} has no registry name")
        if name in _REGISTRY and _REGISTRY[name] is not klass:
            raise TypeError(f"combiner name {name!r} is registered twice")
        _REGISTRY[name] = klass
        for group in groups:
            members = _GROUPS.setdefault(group, [])
            if name not in members:
                members.append(name)
        return klass

    return add if cls is None else add(cls)


def _ensure_loaded() -> None:
    """Import the listed modules once, then order the table by that list (so the listing does
    not depend on which module a user happened to import first)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in COMBINER_MODULES:
        importlib.import_module(module)
    rank = {m: i for i, m in enumerate(COMBINER_MODULES)}
    seq = {name: i for i, name in enumerate(_REGISTRY)}

    def key(name: str) -> tuple[int, int]:
        return rank.get(_REGISTRY[name].__module__, len(rank)), seq[name]

    ordered = sorted(_REGISTRY, key=key)
    items = {name: _REGISTRY[name] for name in ordered}
    _REGISTRY.clear()
    _REGISTRY.update(items)
    for members in _GROUPS.values():
        members.sort(key=key)


def list_combiners(pattern: str = "*", *, group: str | None = None) -> list[str]:
    """Registered names matching a shell-style pattern (and a group), baselines first."""
    _ensure_loaded()
    names = list(_REGISTRY) if group is None else list(method_groups().get(group, []))
    if group is not None and group not in method_groups():
        raise FitError(f"unknown method group {group!r}; known: {', '.join(method_groups())}")
    return [name for name in names if fnmatch.fnmatch(name, pattern)]


def method_groups() -> dict[str, list[str]]:
    """Group name -> registered names, plus ``all`` (every name)."""
    _ensure_loaded()
    return {**{g: list(m) for g, m in _GROUPS.items()}, "all": list(_REGISTRY)}


def expand_methods(methods: Iterable[str]) -> list[str]:
    """Names and groups (``core``, ``heads``, ``compute``, ``all``, ...) -> registered names."""
    groups = method_groups()
    out: list[str] = []
    for m in methods:
        for name in groups.get(m, [m]):
            if name not in _REGISTRY:
                raise FitError(
                    f"unknown method {name!r} (known: {', '.join(_REGISTRY)}; "
                    f"groups: {', '.join(groups)})"
                )
            if name not in out:
                out.append(name)
    return out


def combiner_class(name: str) -> type[Combiner]:
    """The class registered under ``name``; FitError listing the known names otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FitError(f"unknown combiner {name!r}; known: {', '.join(_REGISTRY)}") from None


def make_combiner(name: str, **params: Any) -> Combiner:
    """``make_combiner("nlc", steps=500)`` -> an unfitted combiner (``inner__steps=...`` routes
    to a composed combiner's inner one)."""
    cls = combiner_class(name)
    return cls().set_params(**params)


def combiner_from_state(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor], *, device: str | None = None
) -> Combiner:
    """Rebuild any fitted combiner from its ``config()`` + ``state_dict()``."""
    return combiner_class(str(config.get("name"))).from_state(config, state_dict, device=device)
