"""Argument checks at parse time: bad numbers, unusable devices and impossible output paths are
refused before any work starts.

`OneLineParser` turns argparse's own errors into a `ClipfuseError` (no usage block; `clipfuse
CMD -h` shows it), so every bad input reads the same: `clipfuse: error: ...`, one line, exit 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from clipfuse.errors import ClipfuseError


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ClipfuseError(f"{message} (see {self.prog} -h)")


def at_least(low: int, what: str):
    """`type=` for integer counts >= ``low`` (1: batch size, limit, seeds ...; 0: workers)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    return check


positive_int = at_least(1, "a positive integer")
non_negative_int = at_least(0, "an integer >= 0")


def positive_int_list(text: str) -> str:
    """`type=` for --shots: a comma list of positive integers, checked here and passed on as
    typed (the commands parse the list themselves)."""
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--shots takes integers (a comma list, e.g. 1,4,16), got {text!r}"
            ) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"shots must be >= 1, got {value}")
    return text


def creatable_path(text: str) -> str:
    """`type=` for --out / --store: the path exists, or its nearest existing ancestor is a folder
    this process may write to, so hours of work do not end in an unwritable destination."""
    path = Path(text).expanduser().absolute()
    if path.exists():
        return text
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot create {text!r}: {str(ancestor)!r} is not a directory"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot create {text!r}: {str(ancestor)!r} is not writable"
        )
    return text


def available_device(text: str) -> str:
    """`type=` for --device: a device this machine has (cpu, cuda[:N] with CUDA, mps, ...)."""
    from clipfuse.backbones.devices import check_device

    try:
        check_device(text)
    except ClipfuseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


__all__ = ["OneLineParser", "available_device", "non_negative_int", "positive_int"]


POSITIVE = {
    "batch_size",
    "limit",
    "train_limit",
    "test_limit",
    "seeds",
    "shard_size",
    "top_k",
    "threads",
    "max_batch",
    "max_images",
    "max_pixels",
}
NON_NEGATIVE = {"workers"}


def harden(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every subcommand's integer counts and `--device` the checks above, by destination
    name, so commands added later are covered without touching their parser code."""
    subcommands = [
        choice
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action.choices.values()
    ]
    for sub in subcommands:
        for action in sub._actions:
            if action.type is int and action.dest in POSITIVE:
                action.type = positive_int
            elif action.type is int and action.dest in NON_NEGATIVE:
                action.type = non_negative_int
            elif action.dest == "device" and action.type is None:
                action.type = available_device
            elif action.dest == "shots" and action.type is None:
                action.type = positive_int_list
            elif action.dest in ("out", "store") and action.type is None:
                action.type = creatable_path
    return parser
