"""Shared fixtures: the benchmark data in ../shared/data (required in CI, skipped locally when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("COREVAD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; in CI (CI=true) its absence is a failure, never a silent skip."""
    marker = SHARED_DATA / "ucf_crime" / "test_annotations.tsv"
    if not marker.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"benchmark data missing in CI: {marker} (set COREVAD_SHARED_DATA)")
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own $XDG_STATE_HOME: the MQTT outbox and the open-alert record of one test's
    monitor must never be picked up by another's (a restarted monitor ends the alerts it finds there)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real PostgreSQL server for the session (tests that stop, kill or freeze it start their own)."""
    from corevad_stream.testing.postgres import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty database on the session's server; its password is in $COREVAD_TEST_PG_PASSWORD."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, password=postgres_server.password, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER corevad")
    monkeypatch.setenv("COREVAD_TEST_PG_PASSWORD", postgres_server.password)
    return f"postgresql://corevad@{postgres_server.host}:{postgres_server.port}/{name}"
