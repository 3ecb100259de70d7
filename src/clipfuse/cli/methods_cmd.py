"""methods: every registered combiner, its groups and what it needs, read from the registry's
declared capabilities (class attributes), never from a hand-kept list.

A column is one (header, getter) pair in ``COLUMNS``: a new declared capability (a tier, say)
is one more line there and shows up in the table and in ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from clipfuse.cli.common import command, parsers, print_table


def _runs(cls) -> str:
    if cls.supports_staged:
        return "cheapest first"
    return "a chosen subset" if cls.selects_backbones else "all backbones"


def _tier(cls) -> str:
    from clipfuse.combiners.registry import combiner_tier

    return combiner_tier(cls.name)


def _summary(cls) -> str:
    doc = " ".join((cls.__doc__ or "").replace("``", "").split())
    first = doc.split(". ")[0].rstrip(".")
    return first if len(first) <= 70 else first[:67] + "..."


# header -> value of a registered class (its groups are passed in: they live in the registry);
# values stay raw (booleans, counts) for --json, the table shows True/False as yes/-
COLUMNS: list[tuple[str, Callable[[Any, list[str]], Any]]] = [
    ("method", lambda cls, groups: cls.name),
    ("groups", lambda cls, groups: ",".join(groups)),
    ("tier", lambda cls, groups: _tier(cls)),
    ("labels/class", lambda cls, groups: cls.min_per_class),
    ("features", lambda cls, groups: cls.uses_features),
    ("unlabelled", lambda cls, groups: cls.uses_unlabelled),
    ("transductive", lambda cls, groups: cls.transductive),
    ("runs", lambda cls, groups: _runs(cls)),
    ("summary", lambda cls, groups: _summary(cls)),
]


def method_rows(group: str | None = None) -> list[dict[str, Any]]:
    """One row per registered combiner (of `group`), in the registry's order."""
    from clipfuse.combiners.registry import combiner_class, list_combiners, method_groups

    groups = {g: m for g, m in method_groups().items() if g != "all"}
    rows = []
    for name in list_combiners(group=group):
        cls = combiner_class(name)
        member_of = [g for g, members in groups.items() if name in members]
        rows.append({header: get(cls, member_of) for header, get in COLUMNS})
    return rows


@parsers
def add_parsers(sub) -> None:
    p = sub.add_parser(
        "methods", help="list the fusion methods: groups, what each needs (labels, features, ...)"
    )
    p.add_argument("--group", default=None, help="only this group (core, heads, fusion, ...)")
    p.add_argument("--json", action="store_true", help="one JSON object per method")


@command("methods")
def cmd_methods(args) -> int:
    from clipfuse.combiners.registry import RECOMMENDED

    rows = method_rows(args.group)
    if args.json:
        print(json.dumps({"recommended": RECOMMENDED, "methods": rows}, indent=1))
        return 0
    shown = [
        {k: ("yes" if v else "-") if isinstance(v, bool) else v for k, v in r.items()} for r in rows
    ]
    print_table(shown, [header for header, _ in COLUMNS])
    print(
        f"\n{len(rows)} methods; recommended: {RECOMMENDED} (`clipfuse fit` without --method). "
        "labels/class: labelled examples per class that fit needs at least; unlabelled: fit "
        "also learns from rows labelled -1; transductive: a prediction depends on its batch."
    )
    return 0
