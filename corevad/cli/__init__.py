"""`corevad` command line: benchmark evaluation and the offline-pipeline commands.

The only part of corevad that imports argparse and rich: the method modules and the pipelines
(corevad.pipelines) are a library, and this package is their console front end.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from ..errors import CorevadError
from . import evaluate, pipelines

# The parser's description (`corevad --help`), worded as before the command line became a package.
DESCRIPTION = "`corevad` command line: benchmark evaluation (and the offline-pipeline commands)."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corevad", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    evaluate.add_command(sub)
    pipelines.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CorevadError, ValueError, FileNotFoundError) as e:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["build_parser", "main"]
