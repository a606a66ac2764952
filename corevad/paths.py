"""Where corevad keeps generated files (tiny models, the demo clip) and runtime state (outbox, event store)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$COREVAD_CACHE, else $XDG_CACHE_HOME/corevad, else ~/.cache/corevad (read at call time)."""
    if env := os.environ.get("COREVAD_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corevad"


def state_dir() -> Path:
    """$XDG_STATE_HOME/corevad, else ~/.local/state/corevad (read at call time): the MQTT outbox and the
    event store (with the open-alert record) live here, so they survive a restart."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "corevad"


def data_file(package: str, name: str) -> Path:
    """A file shipped inside a package's data/ folder (the prompt, method and replay configs, examples).

    Read through importlib.resources, so it works from a wheel as well as from a source checkout."""
    from importlib import resources

    return Path(str(resources.files(package).joinpath("data", name)))
