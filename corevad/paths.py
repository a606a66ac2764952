"""Where corevad keeps generated files (tiny models, the demo clip)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$COREVAD_CACHE, else $XDG_CACHE_HOME/corevad, else ~/.cache/corevad (read at call time)."""
    if env := os.environ.get("COREVAD_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corevad"
