"""Command-line options shared by the tuning tools (tools/tune_causal.py, tools/tune_text.py).

They live here, with the rest of corevad's argparse, so the tools share them without importing each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_answer_args(ap: argparse.ArgumentParser, *, default_data: Path) -> None:
    """What the tuning tools read and how they choose alert thresholds (--data, --responses, --probabilities,
    --search-thresholds)."""
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--responses", type=Path, help="answers to tune on (default: the authors' recorded ones)")
    ap.add_argument("--probabilities", type=Path,
                    help="P(Anomalous) per segment (corevad generate's <out stem>.p_anomalous.json), scored "
                         "instead of the labels where known")
    ap.add_argument("--search-thresholds", action="store_true",
                    help="search the open threshold over the tune scores instead of the fixed grid (for "
                         "continuous scores such as label probabilities)")
