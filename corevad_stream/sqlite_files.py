"""The one home for a damaged sqlite file (the event store, the MQTT outbox): recognise it, set it aside.

Why set aside and never delete: a damaged file must not keep the monitor from starting, and what it held
(alert history, undelivered events) is for a person to look at, so it is renamed to `<name>.bad-<time>`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)


def is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """True when sqlite says the file is not a (sound) database, as opposed to locked, full or read-only."""
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def set_aside(path: Path, exc: Exception, *, what: str, kept: str = "") -> Path:
    """Move a damaged file and its WAL/SHM to <name>.bad-<time> (logged once as an error, `kept` saying what
    was saved from it); the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists():
            os.replace(p, p.with_name(f"{p.name}.bad-{stamp}"))
    moved = path.with_name(f"{path.name}.bad-{stamp}")
    log.error("%s %s is damaged (%s): moved to %s, starting a new one%s", what, path, exc, moved.name, kept)
    return moved
