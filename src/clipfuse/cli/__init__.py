"""Command-line front end: a thin layer over the Python API.

User errors (ClipfuseError) print one line on stderr and exit with code 2; Ctrl-C exits with 130
and leaves every store consistent (rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from clipfuse.cli import analysis_cmds, core_cmds, fusion_cmds, methods_cmd, serve_cmds  # noqa: F401  (registers the commands)
from clipfuse.cli.common import COMMANDS, PARSERS
from clipfuse.cli.validate import OneLineParser, harden
from clipfuse.errors import ClipfuseError, DeprecatedNameWarning

_SHOW = warnings.showwarning


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="clipfuse", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"clipfuse {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return harden(parser)


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Deprecated names: one ``clipfuse: warning:`` line; other warnings as Python shows them."""
    if issubclass(category, DeprecatedNameWarning):
        print(f"clipfuse: warning: {message}", file=sys.stderr)
    else:
        _SHOW(message, category, filename, lineno, file, line)


def _version() -> str:
    from clipfuse import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("always", DeprecatedNameWarning)
            warnings.showwarning = _warn_one_line
            return COMMANDS[args.command](args)
    except ClipfuseError as exc:
        print(f"clipfuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "clipfuse: interrupted; completed shards are kept, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
