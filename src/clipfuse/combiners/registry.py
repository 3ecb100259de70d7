"""Name registry: build combiners from strings (CLI, saved ensembles), timm-style.

Registration is inverted, as in timm's ``@register_model``: each combiner module decorates its
classes with ``@register_combiner(groups=...)``, and this module imports none of them, so it
cannot take part in an import cycle. The first lookup imports the modules listed in
``COMBINER_MODULES`` (by name, like timm's ``models/__init__`` star-imports), which fills the
table; a plugin module of one's own is registered the same way once imported.

Method groups are named by concept (``label-free``, ``weighted``, ``controllers``, ``heads``,
``compute``, ``transductive``; plus ``core``, the paper's methods and evaluate's default,
``recommended`` and ``all``) and declared where a class is registered, with its tier: ``stable``,
``experimental`` (evidence thin or narrow) or ``deprecated`` (an alias that warns, naming its
replacement, e.g. the group ``fusion``, which listed what issue 11 added).
"""

from __future__ import annotations

import fnmatch
import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from clipfuse.errors import DeprecatedNameWarning, FitError

if TYPE_CHECKING:  # only for type hints: the registry imports no combiner at run time
    import torch

    from clipfuse.combiners.base import Combiner

# Import order is the listing order (baselines first); each module registers its own classes.
COMBINER_MODULES: tuple[str, ...] = (
    "clipfuse.combiners.static",
    "clipfuse.combiners.gating",  # moe
    "clipfuse.combiners.nlc",
    "clipfuse.heads.stack",
    "clipfuse.cascade.cascade",
    "clipfuse.cascade.subset",
    "clipfuse.combiners.mixes",
    "clipfuse.combiners.nlc_residual",
    "clipfuse.combiners.transductive",
    "clipfuse.heads.zeroshot_stack",
    "clipfuse.combiners.nlc_learn",
    "clipfuse.combiners.select",
)

# The method `clipfuse fit` uses without --method and `evaluate --methods recommended` runs
# (why: docs/method.md "The recommended method: auto"; figures: BENCHMARKS.md "Task suite").
RECOMMENDED = "auto"

TIERS = ("stable", "experimental", "deprecated")
_REGISTRY: dict[str, type[Combiner]] = {}
_GROUPS: dict[str, list[str]] = {}
_TIER: dict[str, str] = {}
_ALIASES: dict[str, str] = {}  # deprecated combiner name -> its replacement
# Deprecated groups: name -> (its members, frozen, and what to use instead).
_OLD_GROUPS: dict[str, tuple[tuple[str, ...], str]] = {
    "fusion": (
        ("shrunk_mix", "semi_mix", "conf_weighted", "conf_mix", "safe_mix", "safe_conf_mix",
         "caruana", "nlc_residual", "transclip", "zs_probe", "zs_probe_nlc"),
        "'weighted', 'label-free', 'controllers', 'heads' or 'transductive'",
    ),
}  # fmt: skip
_loaded = False

C = TypeVar("C", bound=type)


def register_combiner(
    cls: C | None = None, *, groups: Iterable[str] = (), tier: str = "stable"
) -> C | Callable[[C], C]:
    """Register a Combiner class under its ``name`` (decorator, or a plain call for generated
    classes); ``groups`` adds the name to method groups such as ``weighted``; ``tier`` is
    ``stable`` or ``experimental`` (deprecated names are aliases: ``register_alias``)."""
    if tier not in TIERS[:2]:
        raise TypeError(f"tier must be 'stable' or 'experimental'; got {tier!r}")

    def add(klass: C) -> C:
        name = klass.name
        if not name:
            raise TypeError(f"{klass.__name__} has no registry name")
        if name in _REGISTRY and _REGISTRY[name] is not klass:
            raise TypeError(f"combiner name {name!r} is registered twice")
        _REGISTRY[name] = klass
        _TIER[name] = tier
        for group in groups:
            members = _GROUPS.setdefault(group, [])
            if name not in members:
                members.append(name)
        return klass

    return add if cls is None else add(cls)


def register_alias(old: str, new: str) -> None:
    """A deprecated name that still builds ``new`` (saved files, scripts), with a warning."""
    _ALIASES[old] = new


def _resolve(name: str) -> str:
    """A registered name for ``name``; a deprecated alias warns, naming its replacement."""
    if name in _ALIASES and name not in _REGISTRY:
        warnings.warn(
            f"combiner {name!r} is deprecated; use {_ALIASES[name]!r}",
            DeprecatedNameWarning,
            stacklevel=3,
        )
        return _ALIASES[name]
    return name


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


def list_combiners(
    pattern: str = "*", *, group: str | None = None, tier: str | None = None
) -> list[str]:
    """Registered names matching a shell-style pattern, a group and a tier, baselines first
    (``tier="deprecated"``: the deprecated aliases)."""
    _ensure_loaded()
    if tier is not None and tier not in TIERS:
        raise FitError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
    if group is not None and group not in method_groups():
        raise FitError(f"unknown method group {group!r}; known: {', '.join(method_groups())}")
    names = list(_REGISTRY) if group is None else method_groups()[group]
    if tier == "deprecated":
        names = [a for a in _ALIASES if group is None or _ALIASES[a] in names]
    elif tier is not None:
        names = [n for n in names if _TIER[n] == tier]
    return [name for name in names if fnmatch.fnmatch(name, pattern)]


def combiner_tier(name: str) -> str:
    """``stable``, ``experimental`` or ``deprecated`` (an alias) for a known name."""
    _ensure_loaded()
    if name in _ALIASES and name not in _REGISTRY:
        return "deprecated"
    combiner_class(name)  # unknown: one FitError line
    return _TIER[name]


def method_groups() -> dict[str, list[str]]:
    """Group name -> registered names, plus ``all`` (every name); deprecated groups left out."""
    _ensure_loaded()
    return {**{g: list(m) for g, m in _GROUPS.items()}, "all": list(_REGISTRY)}


def expand_methods(methods: Iterable[str]) -> list[str]:
    """Names and groups (``core``, ``weighted``, ``heads``, ``all``, ...) -> registered names;
    deprecated names and groups warn, naming their replacement."""
    groups = method_groups()
    out: list[str] = []
    for m in methods:
        if m in _OLD_GROUPS and m not in groups:
            members, instead = _OLD_GROUPS[m]
            warnings.warn(
                f"method group {m!r} is deprecated; use {instead}", DeprecatedNameWarning, 2
            )
            groups = {**groups, m: list(members)}
        for name in groups.get(m, [m]):
            name = _resolve(name)
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
        return _REGISTRY[_resolve(name)]
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
    name = _resolve(str(config.get("name")))
    return combiner_class(name).from_state({**config, "name": name}, state_dict, device=device)
