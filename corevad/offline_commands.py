"""Sub-commands of `corevad` for the paper's offline pipeline (extract features, generate answers, LRC)."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Register the offline-pipeline sub-commands on the `corevad` parser."""
