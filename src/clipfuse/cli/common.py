"""Shared CLI pieces: the command registry, data/store arguments, table printing."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
PARSERS: list[Callable] = []  # each adds its subcommands to the subparsers object


def command(name: str):
    """Register a function as the handler of subcommand `name`."""

    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def parsers(fn):
    """Register a function that adds subcommand parsers."""
    PARSERS.append(fn)
    return fn


def add_data_args(p: argparse.ArgumentParser, split: bool = True, many: bool = False) -> None:
    """The data options; ``many``: --data and --split repeat (several datasets, `analyze`)."""
    action, again = ("append", " (repeat for several)") if many else ("store", "")
    p.add_argument(
        "--data",
        action=action,
        required=True,
        help=f"source: imagefolder:PATH, idx:DIR, csv:FILE, wds:DIR or parquet:PATH{again}",
    )
    if split:
        p.add_argument(
            "--split", action=action, required=True, help=f"split name (train, test, all, ...){again}"
        )
    p.add_argument(
        "--limit", type=int, default=None, help="a deterministic class-balanced sample of N images"
    )
    p.add_argument(
        "--classnames", default=None, help="class names file (one per line), overrides the catalog"
    )
    p.add_argument(
        "--templates", default=None, help="prompt templates file (JSON list or lines with {c})"
    )
    p.add_argument("--name", default=None, help="dataset name (default: guessed from the path)")
    p.add_argument(
        "--image-column", default=None, help="parquet: the column of encoded images (if several)"
    )
    p.add_argument(
        "--label-column", default=None, help="parquet: the column of labels (if several)"
    )


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """`--threads` for every command that encodes images."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per encoder (default: OMP_NUM_THREADS if set, else the cores this "
        "process may use minus the decode workers; 1 is safest on a machine shared with other work)",
    )


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help='local: this process (default); ray: a Ray cluster (pip install "clipfuse[ray]")',
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a local Ray)",
    )


FROM_ARGS: Any = object()  # "take --limit from the parsed options"


def open_data(args, split: str | None = None, *, source: str | None = None, limit=FROM_ARGS):
    """The dataset the data options name; ``source``/``limit`` override them (``limit=None``:
    every image), and the parsed options are never rewritten."""
    import sys

    from clipfuse.data import open_dataset

    dataset = open_dataset(
        source or args.data,
        split or args.split,
        name=args.name,
        classnames=args.classnames,
        templates=args.templates,
        limit=args.limit if limit is FROM_ARGS else limit,
        image_column=args.image_column,
        label_column=args.label_column,
    )
    if dataset.columns:  # stderr: --json output stays clean
        print(
            f"{dataset.name} {dataset.split}: images from column {dataset.columns['image']!r}, "
            f"labels from column {dataset.columns['label']!r}",
            file=sys.stderr,
        )
    return dataset


def open_view(args, store, split: str, *, source: str | None = None, limit=FROM_ARGS):
    """The cached fusion inputs of one split, as the data and --backbone options name them."""
    from clipfuse.logits.views import bundle_for

    return bundle_for(store, open_data(args, split, source=source, limit=limit), args.backbone)


def existing_store(path: str):
    """A store that must already exist (commands that only read from it)."""
    from clipfuse.logits.views import as_store

    return as_store(path)


# One unit for accuracy: rows (and every JSON file) hold fractions in [0, 1]; a table on screen
# shows these columns as percentages with 2 decimals. POINT_COLUMNS are already differences in
# percentage points and get the same 2 decimals.
ACCURACY_COLUMNS = frozenset(
    {"top1", "top5", "mean_per_class_recall", "best acc", "oracle", "oracle gap", "accuracy"}
)
POINT_COLUMNS = frozenset({"drop"})


def format_cell(column: str, v: Any, percent: frozenset[str] = frozenset()) -> str:
    """One table cell: accuracies (fractions) as percent with 2 decimals, points with 2,
    other floats with 4."""
    if isinstance(v, float) and not isinstance(v, bool):
        if column in ACCURACY_COLUMNS or column in percent:
            return f"{100 * v:.2f}"
        return f"{v:.2f}" if column in POINT_COLUMNS else f"{v:.4f}"
    return str(v)


def print_table(rows: list[dict], columns: list[str], percent: Iterable[str] = ()) -> None:
    """Aligned columns; accuracies in rows are fractions and print as percentages (see
    ACCURACY_COLUMNS; ``percent`` names more such columns, e.g. per-backbone recalls)."""
    extra = frozenset(percent)
    cells = [{c: format_cell(c, r.get(c, ""), extra) for c in columns} for r in rows]
    widths = {c: max(len(c), *(len(cell[c]) for cell in cells)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for cell in cells:
        print("  ".join(cell[c].ljust(widths[c]) for c in columns))
