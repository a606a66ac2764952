"""The event store: alert history, status changes, per-segment scores and snapshots, in a sqlite file (the
embedded default) or a PostgreSQL database (`store.url`, shared by a group of monitors).

The sink (sinks/store.py), the HTTP API and the page use the EventStore interface; open_store picks the
backend from a StoreLocation (config: StoreConfig.location). psycopg is imported only when a
PostgreSQL store is opened (the `postgres` extra).
"""

from __future__ import annotations

from ._base import EventStore, Retention, StoreError, StoreLocation, check_postgres_url, retryable
from ._postgres import PostgresStore
from ._sqlite import SqliteStore, connect, snapshot_dir

__all__ = ["EventStore", "PostgresStore", "Retention", "SqliteStore", "StoreError", "StoreLocation",
           "check_postgres_url", "connect", "open_store", "retryable", "snapshot_dir"]


def open_store(location: StoreLocation, *, retention: Retention = Retention()) -> EventStore:
    """The store at `location`: a SqliteStore for a path, a PostgresStore for a URL (StoreError when it cannot
    be opened; the PostgreSQL driver is imported only here)."""
    if location.path is not None:
        return SqliteStore(location.path, retention=retention)
    assert location.url is not None
    return PostgresStore(location.url, password=location.password, retention=retention)
