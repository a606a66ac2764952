"""Sub-commands of `corevad-stream` for benchmark replay and the online-versus-offline report."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Register the replay/report sub-commands on the `corevad-stream` parser."""
