"""The PostgreSQL test service itself: password auth, fresh databases, and the outages the store and the
group tests rely on (kill then restart on the same port; a frozen server times connections out)."""

from __future__ import annotations

from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

from corevad_stream.testing.postgres import PostgresServer  # noqa: E402


def test_fresh_database_needs_the_password(postgres_url: str, postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_url, password=postgres_server.password) as conn:
        assert conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone() == (0,)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(postgres_url, password="wrong", connect_timeout=5)


def test_kill_freeze_and_restart_on_the_same_port(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path)
    try:
        server.start()
        with psycopg.connect(server.url, password=server.password) as conn:
            conn.execute("create table t (x int)")
            conn.execute("insert into t values (7)")
            conn.commit()
        server.freeze()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, password=server.password, connect_timeout=1)
        server.thaw()
        server.kill()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, password=server.password, connect_timeout=1)
        server.start()
        with psycopg.connect(server.url, password=server.password) as conn:
            assert conn.execute("select x from t").fetchone() == (7,)
    finally:
        server.remove()
    assert not server.datadir.exists()
