"""What both event-store backends share: the interface the sink, the HTTP API and the page read through,
the retention, the location (a sqlite file or a PostgreSQL database), the error, and the alert row shape."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import StreamError

POSTGRES_SCHEMES = ("postgresql", "postgres")


class StoreError(StreamError):
    """The event store cannot be opened, written or read (the database or file, never the caller's input)."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history is kept: scores younger than `days`, and the store under `max_bytes` (oldest first)."""

    days: float = 30.0
    max_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where the history lives: a sqlite `path`, or a PostgreSQL `url` (no password in it) and its `password`."""

    path: Path | None = None
    url: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("StoreLocation: give a sqlite path or a PostgreSQL url, exactly one")
        if self.url is not None:
            check_postgres_url(self.url, field="url")
        if self.password is not None and self.url is None:
            raise ValueError("StoreLocation: a password goes with a PostgreSQL url only")

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        """For logs and errors: the file, or the URL (which never holds the password)."""
        return str(self.path) if self.path is not None else str(self.url)


def check_postgres_url(url: str, *, field: str) -> None:
    """ValueError naming `field` unless `url` is postgresql://[user@]host[:port]/db without a password."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{field}: not a URL: {exc}") from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ValueError(f"{field}: must start with postgresql:// (got {parts.scheme or 'no scheme'}://)")
    if parts.password is not None:
        raise ValueError(f"{field}: holds a password; give it with password_env or password_file instead")
    if not parts.hostname:
        raise ValueError(f"{field}: names no host")
    if not parts.path.strip("/"):
        raise ValueError(f"{field}: names no database (postgresql://user@host:port/DATABASE)")
    del port


class EventStore(Protocol):
    """The event store as its users see it: the sink writes (one thread), the API and the page read (any
    thread). SqliteStore and PostgresStore give the same results for the same writes."""

    retention: Retention

    @property
    def where(self) -> str:
        """The file or URL, for logs."""
        ...

    def write(self, kind: str, camera: str | None, payload: Any, at: float, *, alert_id: str | None = None
              ) -> None: ...

    def acknowledge(self, alert_id: str, *, at: float | None = None) -> bool: ...

    def prune(self, *, now: float | None = None) -> int: ...

    def size_bytes(self) -> int: ...

    def checkpoint(self) -> None: ...

    def alerts(self, *, camera: str | None = None, since: float | None = None, until: float | None = None,
               active: bool | None = None, limit: int = 50, offset: int = 0, before: str | None = None
               ) -> list[dict[str, Any]]: ...

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def active_alerts(self) -> list[dict[str, Any]]: ...

    def scores(self, camera: str, start: float, end: float) -> list[dict[str, Any]]: ...

    def snapshot(self, alert_id: str) -> bytes | None: ...

    def count(self, table: str) -> int: ...

    def close(self) -> None: ...


COUNTED_TABLES = ("alerts", "alert_events", "status", "scores")
MAX_PAGE = 1000
# One snapshot's bound: a full-resolution 4K JPEG at high quality is 2-5 MB. The API hands a snapshot out
# whole, so what goes in is bounded here (a bigger one is refused, logged and counted by the sink).
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


def check_snapshot(alert_id: str, jpeg: bytes) -> None:
    if len(jpeg) > MAX_SNAPSHOT_BYTES:
        raise ValueError(f"snapshot of {alert_id[:80]}: {len(jpeg)} bytes, over the {MAX_SNAPSHOT_BYTES} byte bound")


def retryable(exc: BaseException) -> bool:
    """The store said no for now (disk full, read-only, locked; the database down or restarting), as opposed
    to a write that can never work (a malformed message, a constraint). The store sink retries the first."""
    import sqlite3

    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.DataError
                  | sqlite3.InterfaceError | sqlite3.NotSupportedError):
        return False
    if isinstance(exc, sqlite3.DatabaseError | OSError | StoreError):
        return True
    psycopg = sys.modules.get("psycopg")  # imported only where a PostgreSQL store is in use
    if psycopg is not None:
        # OperationalError: the server is gone, restarting, refusing connections; InterfaceError: the
        # connection it broke is closed. Both pass once it is back. The rest (data, integrity) never do.
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return False


def alert_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored alert row as the API returns it (both backends): active a bool, the explanation a list."""
    d = dict(row)
    d["active"] = bool(d["active"])
    d["explanation"] = json.loads(d["explanation"])
    return d


def alert_values(a: Mapping[str, Any]) -> tuple[Any, ...]:
    """The columns an alert event writes, in the order of both backends' INSERT."""
    return (a["id"], a["camera"], a["start_time"], a.get("end_time"), bool(a.get("active")),
            a.get("start_segment"), a.get("end_segment"), a.get("peak_segment"), a.get("peak_score"),
            a.get("score"), json.dumps(a.get("explanation", [])), a.get("end_reason"))


def snapshot_name(alert_id: str) -> str:
    """The alert's snapshot name (a file name on sqlite, the same value in the `snapshot` column on PostgreSQL,
    so both give the same API results). Ids are `<camera>-<run>-<segment>`; camera names are already safe."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in alert_id) + ".jpg"


def alert_page_clause(where: list[str], args: list[Any], *, camera: str | None, since: float | None,
                      until: float | None, active: bool | None, mark: str) -> None:
    """The filters of EventStore.alerts as SQL fragments (`mark` the driver's parameter mark: ? or %s)."""
    if camera is not None:
        where.append(f"camera = {mark}")
        args.append(camera)
    if since is not None:
        where.append(f"start_time >= {mark}")
        args.append(since)
    if until is not None:
        where.append(f"start_time < {mark}")
        args.append(until)
    if active is not None:
        where.append(f"active = {mark}")
        args.append(active)
