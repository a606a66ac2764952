"""The event store and its sink, on both backends (sqlite WAL and a real PostgreSQL): alert life, retention
and size cap, snapshots, schema migration, concurrent readers, the open-alert record, the runtime writing to
it; sqlite alone: SIGKILL survival, a damaged file, a full disk; PostgreSQL alone: an outage while writing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from stream_doubles import ANOMALOUS, NORMAL, ScriptedBackend, store_section, stream_config

from corevad.backoff import BackoffPolicy
from corevad_stream import App
from corevad_stream.messages import Message
from corevad_stream.sinks.store import EventStoreSink
from corevad_stream.store import EventStore, Retention, SqliteStore, StoreLocation, open_store


def _snapshot_files(store: EventStore) -> set[str]:
    """The alerts that have a snapshot, from the store's own answer (a file on sqlite, a row on PostgreSQL)."""
    return {a["id"] for a in store.alerts(limit=1000) if store.snapshot(a["id"]) is not None}


def _event(kind: str, alert_id: str, *, active: bool, peak: float, end_reason: str | None = None) -> dict:
    after = {"id": alert_id, "camera": "cam", "active": active, "start_time": 100.0,
             "end_time": None if active else 130.0, "start_segment": 3, "end_segment": None if active else 33,
             "peak_segment": 5, "peak_score": peak, "score": peak, "explanation": ["A man climbs the fence."],
             "end_reason": end_reason}
    return {"type": kind, "before": None, "after": after}


def test_an_alert_keeps_its_whole_life_and_acknowledgement(store_at: StoreLocation) -> None:
    store = open_store(store_at)
    store.write("events", None, _event("new", "cam-r-3", active=True, peak=0.99), 101.0)
    store.write("events", None, _event("update", "cam-r-3", active=True, peak=1.0), 105.0)
    assert [a["id"] for a in store.active_alerts()] == ["cam-r-3"]
    store.write("events", None, _event("end", "cam-r-3", active=False, peak=1.0, end_reason="score below close "
                                       "threshold"), 131.0)
    [alert] = store.alerts(camera="cam")
    assert not alert["active"] and alert["peak_score"] == 1.0 and alert["end_reason"].startswith("score below")
    assert alert["explanation"] == ["A man climbs the fence."] and store.count("alert_events") == 3
    assert store.active_alerts() == [] and store.acknowledge("cam-r-3", at=200.0) and not store.acknowledge("nope")
    assert store.alerts()[0]["acknowledged_at"] == 200.0
    assert store.alerts(camera="other") == [] and store.alerts(since=101.0) == []  # filters
    store.close()


def test_retention_by_age_and_the_size_cap_delete_the_oldest_scores(store_at: StoreLocation) -> None:
    store = open_store(store_at, retention=Retention(days=1, max_bytes=10**12))
    now = 10 * 86400.0
    for i in range(2000):
        t = now - 2 * 86400 + i * 86.4  # two days of scores, one every 86.4 s
        store.write("score", "cam", {"index": i, "start": t, "end": t + 1, "score": 0.1, "label": 0}, t)
    assert store.prune(now=now) == 1000 and store.count("scores") == 1000  # end < now - 1 day: i < 1000
    kept = store.scores("cam", 0, now)
    assert kept and min(s["end"] for s in kept) >= now - 86400  # nothing older than a day
    store.retention = Retention(days=1000, max_bytes=store.size_bytes() // 3)
    before = store.count("scores")
    store.prune(now=now)
    assert store.size_bytes() <= store.retention.max_bytes or store.count("scores") == 0
    after = store.scores("cam", 0, now)
    assert len(after) < before and (not after or after[-1]["end"] == kept[-1]["end"])  # the newest stay
    store.close()


def test_snapshots_belong_to_their_open_alert_and_go_with_the_retention(store_at: StoreLocation) -> None:
    store = open_store(store_at, retention=Retention(days=1, max_bytes=10**12))
    store.write("snapshot", "cam", b"\xff\xd8 before any alert", 99.0, alert_id="cam-r-3")  # no alert yet: not kept
    store.write("events", None, _event("new", "cam-r-3", active=True, peak=0.99), 101.0)
    store.write("snapshot", "cam", b"\xff\xd8 first peak", 101.5, alert_id="cam-r-3")
    store.write("snapshot", "cam", b"\xff\xd8 higher peak", 105.5, alert_id="cam-r-3")  # the peak moved: replaced
    store.write("snapshot", "other", b"\xff\xd8 another camera", 105.6, alert_id="other-r-1")  # no such alert
    assert store.snapshot("cam-r-3") == b"\xff\xd8 higher peak" and store.snapshot("other-r-1") is None
    assert store.alert("cam-r-3")["snapshot"] == "cam-r-3.jpg"  # type: ignore[index]  # the same on both
    if isinstance(store, SqliteStore):
        assert sorted(p.name for p in store.snapshot_dir.iterdir()) == ["cam-r-3.jpg"]
    store.write("events", None, _event("end", "cam-r-3", active=False, peak=1.0), 131.0)
    store.write("snapshot", "cam", b"\xff\xd8 after the end", 132.0, alert_id="cam-r-3")
    assert store.snapshot("cam-r-3") == b"\xff\xd8 higher peak"
    assert store.prune(now=100.0 + 0.5 * 86400) == 0 and store.snapshot("cam-r-3")  # younger than a day: kept
    store.prune(now=100.0 + 2 * 86400)
    assert store.snapshot("cam-r-3") is None and store.alert("cam-r-3")["snapshot"] is None  # type: ignore[index]
    assert store.alert("cam-r-3") is not None  # the alert itself stays
    if isinstance(store, SqliteStore):
        assert list(store.snapshot_dir.iterdir()) == []  # the file went with it
    store.close()


def _old_store_at_version_1(at: StoreLocation) -> None:
    """A store as the first release left it: the history tables, no snapshots (sqlite: no version table)."""
    if at.path is not None:
        import sqlite3

        old = sqlite3.connect(at.path)  # the first release's alerts table, without `snapshot`
        old.execute("CREATE TABLE alerts (id TEXT PRIMARY KEY, camera TEXT NOT NULL, start_time REAL NOT NULL, "
                    "end_time REAL, active INTEGER NOT NULL, start_segment INTEGER, end_segment INTEGER, "
                    "peak_segment INTEGER, peak_score REAL, score REAL, explanation TEXT NOT NULL, end_reason TEXT, "
                    "acknowledged_at REAL, updated_at REAL NOT NULL)")
        old.execute("INSERT INTO alerts VALUES ('cam-r-1', 'cam', 50.0, 80.0, 0, 1, 31, 2, 0.9, 0.9, '[\"old\"]', "
                    "'score below close threshold', NULL, 80.0)")
        old.commit()
        old.close()
        return
    import psycopg

    from corevad_stream.store._postgres import MIGRATIONS, migrate

    with psycopg.connect(at.url, password=at.password, autocommit=True) as conn:  # type: ignore[arg-type]
        migrate(conn, "test", MIGRATIONS[:1])
        conn.execute("INSERT INTO alerts VALUES ('cam-r-1', 'cam', 50.0, 80.0, false, 1, 31, 2, 0.9, 0.9, "
                     "'[\"old\"]', 'score below close threshold', NULL, 80.0)")


def _schema_version(at: StoreLocation) -> int:
    if at.path is not None:
        import sqlite3

        with contextlib.closing(sqlite3.connect(at.path)) as conn:
            return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])
    import psycopg

    with psycopg.connect(at.url, password=at.password) as conn:  # type: ignore[arg-type]
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])  # type: ignore[index]


def test_an_older_store_migrates_forward_and_keeps_its_history(store_at: StoreLocation) -> None:
    _old_store_at_version_1(store_at)
    store = open_store(store_at)
    assert _schema_version(store_at) == 2
    [old] = store.alerts()
    assert old["id"] == "cam-r-1" and old["explanation"] == ["old"] and old["snapshot"] is None and not old["active"]
    store.write("events", None, _event("new", "cam-r-3", active=True, peak=0.99), 101.0)
    store.write("snapshot", "cam", b"\xff\xd8", 102.0, alert_id="cam-r-3")  # the step that came with version 2
    assert store.alert("cam-r-3")["snapshot"] == "cam-r-3.jpg" and store.snapshot("cam-r-3") == b"\xff\xd8"  # type: ignore[index]
    store.close()
    again = open_store(store_at)  # opening a current store again changes nothing
    assert _schema_version(store_at) == 2 and len(again.alerts()) == 2
    again.close()


def test_a_store_from_a_newer_version_is_refused_by_name(store_at: StoreLocation) -> None:
    from corevad_stream.store import StoreError

    open_store(store_at).close()
    if store_at.path is not None:
        import sqlite3

        with contextlib.closing(sqlite3.connect(store_at.path)) as conn, conn:
            conn.execute("UPDATE schema_version SET version = 99")
    else:
        import psycopg

        with psycopg.connect(store_at.url, password=store_at.password) as pg:  # type: ignore[arg-type]
            pg.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        open_store(store_at)


def test_readers_never_block_the_writer(store_at: StoreLocation) -> None:
    store = open_store(store_at)
    stop = threading.Event()
    reads: list[list[int]] = [[], [], []]
    reading = [threading.Event() for _ in reads]

    def reader(seen: list[int], started: threading.Event) -> None:
        other = open_store(store_at)
        while not stop.is_set():
            seen.append(len(other.scores("cam", 0, 1e12)))
            started.set()
        other.close()

    threads = [threading.Thread(target=reader, args=(seen, ev)) for seen, ev in zip(reads, reading, strict=True)]
    for t in threads:
        t.start()
    assert all(ev.wait(30) for ev in reading)  # every reader reads before the first write
    t0 = time.monotonic()
    for i in range(300):
        store.write("score", "cam", {"index": i, "start": float(i), "end": i + 1.0, "score": 0.5, "label": 1}, i)
    took = time.monotonic() - t0
    deadline = time.monotonic() + 30
    while not all(seen[-1] == 300 for seen in reads) and time.monotonic() < deadline:
        time.sleep(0.01)  # until each reader has seen the last commit
    stop.set()
    for t in threads:
        t.join()
    assert store.count("scores") == 300
    for seen in reads:  # each reader saw a consistent, growing table while the writer committed
        assert seen[0] == 0 and seen[-1] == 300 and seen == sorted(seen)
    assert took < 30
    store.close()


def test_the_open_alert_record_and_the_history_write_the_same_store_at_once(store_at: StoreLocation) -> None:
    from corevad_stream.alert_state import open_alert_record

    store = open_store(store_at)
    record = open_alert_record(store_at)  # its own connection, as in the monitor (event loop vs the sink's thread)
    errors: list[BaseException] = []

    def history() -> None:
        try:
            for i in range(400):
                store.write("score", "cam", {"index": i, "start": float(i), "end": i + 1.0, "score": 0.5,
                                             "label": 1}, i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=history)
    t.start()
    for i in range(400):
        record.set(f"cam{i % 7}", {"id": f"cam{i % 7}-r-{i}", "camera": f"cam{i % 7}"} if i % 3 else None)
    t.join()
    expected: dict[str, str] = {}
    for i in range(400):  # replay the sets in order: the last write per camera wins
        if not i % 3:
            expected.pop(f"cam{i % 7}", None)
        else:
            expected[f"cam{i % 7}"] = f"cam{i % 7}-r-{i}"
    assert errors == [] and store.count("scores") == 400
    fresh = open_alert_record(store_at)
    assert {c: a["id"] for c, a in fresh.load().items()} == expected
    assert set(fresh.load(["cam1", "cam2", "nope"])) == {"cam1", "cam2"} & set(expected)  # a share of the cameras
    fresh.clear(["cam1"])
    assert set(fresh.load()) == set(expected) - {"cam1"}
    fresh.close()
    record.close()
    store.close()


STORE_WRITER = """
import sys, time
from pathlib import Path
from corevad_stream.store import SqliteStore
store = SqliteStore(Path(sys.argv[1]))
i = 0
while True:
    store.write("score", "cam", {"index": i, "start": float(i), "end": i + 1.0, "score": 0.5, "label": 1}, i)
    if i == 0:
        store.acknowledge("none")
        print("writing", flush=True)
    i += 1
"""


def test_the_store_survives_sigkill_with_every_committed_write(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite3"
    seed = SqliteStore(path)
    seed.write("events", None, _event("new", "cam-r-1", active=True, peak=1.0), 1.0)
    assert seed.acknowledge("cam-r-1", at=5.0)  # committed before it returned
    seed.close()
    proc = subprocess.Popen([sys.executable, "-c", STORE_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    store = SqliteStore(path)  # opens and recovers the WAL
    assert store.alerts()[0]["acknowledged_at"] == 5.0  # the acknowledged event is there
    n = store.count("scores")
    assert n > 10 and [s["segment"] for s in store.scores("cam", 0, 1e12)] == list(range(n))  # no holes
    store.close()


async def test_the_runtime_writes_alerts_status_and_scores(store_at: StoreLocation) -> None:
    def answer(clip):  # type: ignore[no-untyped-def]
        return ANOMALOUS if 3 <= clip.index < 8 else NORMAL

    section = store_section(store_at)  # as users write it: a path, or a URL and the password's variable
    cfg = stream_config([{"name": "yard", "url": "frameless://600", "rate": "fast", "overload_policy": "block"}],
                        refinement={"smooth_length": 1}, alerts={"close_after_s": 0, "cooldown_s": 0},
                        store=section)
    async with App(cfg, backend=ScriptedBackend(answer)) as app:
        await app.wait_finished(timeout=60)
    assert app.stats()["store"]["dropped"] == 0 and app.stats()["store"]["written"] > 20
    store = open_store(store_at)
    [alert] = store.alerts(camera="yard")
    assert alert["start_segment"] == 3 and not alert["active"] and alert["explanation"]
    assert store.count("scores") == 20 and store.count("status") >= 2
    assert json.loads(json.dumps(store.scores("yard", 0, 1e12)))[3]["score"] == 1.0
    store.close()
    await asyncio.sleep(0)


def test_a_damaged_store_file_is_set_aside_and_a_new_one_started(tmp_path: Path) -> None:
    from corevad_stream.alert_state import OpenAlerts

    path = tmp_path / "events.sqlite3"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    record = OpenAlerts(path)  # the first opener at start-up
    assert record.load() == {}
    record.set("gate", {"id": "gate-r-1", "camera": "gate"})
    assert OpenAlerts(path).load() == {"gate": {"id": "gate-r-1", "camera": "gate"}}  # the new file works
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("events.sqlite3.bad-")]
    assert kept.read_bytes() == garbage  # nothing deleted: kept for a person to look at
    record.close()


def test_the_size_cap_counts_snapshots_and_drops_the_oldest_ended_alerts_pictures(store_at: StoreLocation) -> None:
    store = open_store(store_at, retention=Retention(days=1000, max_bytes=10**12))
    picture = b"\xff\xd8" + os.urandom(200_000)
    for k in range(6):  # six alerts an hour apart, each with a 200 kB picture; the last is still open
        aid, t = f"cam-r-{k}", 1000.0 + 3600 * k
        ev = _event("new", aid, active=True, peak=0.99)
        ev["after"]["start_time"] = t
        store.write("events", None, ev, t)
        store.write("snapshot", "cam", picture, t + 1, alert_id=aid)
        if k < 5:
            ev = _event("end", aid, active=False, peak=0.99)
            ev["after"].update(start_time=t, end_time=t + 30)
            store.write("events", None, ev, t + 30)
    for i in range(100):  # scores newer than every picture but the last two
        store.write("score", "cam", {"index": i, "start": 16000.0 + i, "end": 16001.0 + i, "score": 0.1,
                                     "label": 0}, 16001.0 + i)
    before = store.size_bytes()
    assert before > 6 * 200_000  # the pictures count
    store.retention = Retention(days=1000, max_bytes=before - 5 * 100_000)  # 2.5 pictures over: three go
    store.prune(now=20000.0)
    assert store.size_bytes() <= store.retention.max_bytes
    assert _snapshot_files(store) == {"cam-r-3", "cam-r-4", "cam-r-5"}  # the three oldest pictures went first
    assert store.count("scores") == 100 and len(store.alerts()) == 6  # newer scores and every alert row stay
    store.retention = Retention(days=1000, max_bytes=1)  # a cap nothing fits: all but the open alert's picture
    store.prune(now=20000.0)
    assert _snapshot_files(store) == {"cam-r-5"}
    assert store.count("scores") == 0
    store.close()


async def _until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def _long_event(k: int) -> Message:
    ev = _event("new", f"cam-r-{k}", active=True, peak=0.9)
    ev["after"]["explanation"] = [f"{k}: " + "a long explanation " * 300]  # ~6 kB: the WAL must grow
    return Message("events", ev)


async def test_writes_refused_by_a_full_disk_are_retried_once_space_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from corevad_stream.testing.fs_faults import fill, small_tmpfs

    with small_tmpfs(tmp_path / "state", size_kb=4096) as state:
        path = state / "events.sqlite3"
        sink = EventStoreSink(StoreLocation(path=path), retry=BackoffPolicy(initial_s=0.02, max_s=0.2, jitter=0))
        async with sink:
            for k in range(3):
                await sink.send(_long_event(k))
            await _until(lambda: sink.written == 3, "the first writes")
            filler = fill(state)
            for k in range(3, 40):
                await sink.send(_long_event(k))
            await _until(lambda: sink.health()["state"] == "failing", "the store to say it fails")
            health = sink.health()
            assert health["pending"] > 0 and health["failing_since"] and "full" in health["last_error"]
            assert any("EVENT STORE" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
            filler.unlink()  # space is back: what waited goes in, in order, with nothing lost
            await _until(lambda: sink.health()["pending"] == 0 and sink.health()["state"] == "ok", "recovery")
            assert sink.written == 40 and sink.retried > 0 and sink.dropped == 0 and sink.errors == 0
            assert sink.store is not None
            ids = [a["id"] for a in sink.store.alerts(limit=100)]
            assert sorted(ids) == sorted(f"cam-r-{k}" for k in range(40))
            assert sink.store.count("alert_events") == 40  # a retried write is not stored twice


async def test_a_write_that_can_never_succeed_is_counted_and_skipped(store_at: StoreLocation) -> None:
    sink = EventStoreSink(store_at)
    async with sink:
        await sink.send(Message("events", {"type": "new", "after": {}}))  # no id: KeyError, not the disk
        await sink.send(_long_event(1))
        await _until(lambda: sink.written == 1 and sink.errors == 1, "the good write after the bad one")
        assert sink.health()["state"] == "ok" and sink.health()["pending"] == 0


NOW = time.time()  # scores from now: the retention the sink runs once the store opens keeps them


def _score(i: int) -> Message:
    return Message("score", {"index": i, "start": NOW + i, "end": NOW + i + 1.0, "score": 0.5, "label": 1},
                   camera="cam")


@pytest.fixture(scope="module")
def outage_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A PostgreSQL server of these tests' own, which they kill, stop and freeze (the session's one stays up
    for the other tests); each test takes a fresh database on it (fresh_database)."""
    from corevad_stream.testing.postgres import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("pg-outages"))
    server.start()
    yield server
    server.remove()


def fresh_database(server: Any) -> StoreLocation:
    import uuid

    import psycopg

    server.thaw()
    server.start()  # up, whatever the last test left it as
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url, password=server.password, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER corevad")
    return StoreLocation(url=f"postgresql://corevad@{server.host}:{server.port}/{name}", password=server.password)


@pytest.mark.slow
async def test_postgres_killed_and_started_again_while_the_sink_writes_loses_nothing(outage_server: Any) -> None:
    import httpx

    from corevad_stream.alert_state import PostgresOpenAlerts
    from corevad_stream.http import HttpServer, LiveFeed

    server = outage_server
    try:
        at = await asyncio.to_thread(fresh_database, server)
        sink = EventStoreSink(at, queue_size=200, retry=BackoffPolicy(initial_s=0.05, max_s=0.5, jitter=0))
        assert at.url is not None
        record = PostgresOpenAlerts(at.url, password=at.password, commit_wait_s=2.0)
        assert record.load() == {}
        api = HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict, store=at,
                         feed=LiveFeed())
        async with sink, api, httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}", timeout=20) as client:
            for i in range(5):
                await sink.send(_score(i))
            await _until(lambda: sink.written == 5, "the first writes")
            await asyncio.to_thread(server.kill)  # SIGKILL, the whole server: every connection drops
            for i in range(5, 60):
                await sink.send(_score(i))
            await sink.send(_long_event(1))
            await _until(lambda: sink.health()["state"] == "failing", "the store to say it fails")
            health = sink.health()
            assert health["pending"] > 0 and health["failing_since"] and health["last_error"]  # the server's words
            t0 = time.monotonic()
            record.set("cam", {"id": "cam-r-1", "camera": "cam"})  # down: refused at once, logged, never a hang
            assert time.monotonic() - t0 < 2.5
            down = await client.get("/api/events")
            assert down.status_code == 503 and "event store" in down.json()["error"]  # said, not a blank 500
            await asyncio.to_thread(server.start)  # the same port: the URL the sink holds is valid again
            await _until(lambda: sink.health()["pending"] == 0 and sink.health()["state"] == "ok", "recovery")
            assert sink.written == 61 and sink.dropped == 0 and sink.errors == 0 and sink.retried > 0
            assert sink.store is not None
            assert [s["segment"] for s in sink.store.scores("cam", 0, 1e12)] == list(range(60))  # in order, no holes
            assert [a["id"] for a in sink.store.alerts()] == ["cam-r-1"] and sink.store.count("alert_events") == 1
            up = await client.get("/api/events")  # the API's pool drops the dead connections and reads again
            assert up.status_code == 200 and [a["id"] for a in up.json()] == ["cam-r-1"]
            record.set("cam", {"id": "cam-r-2", "camera": "cam"})  # the record reconnects too
            assert record.load() == {"cam": {"id": "cam-r-2", "camera": "cam"}}
        record.close()
    finally:
        await asyncio.to_thread(server.start)


@pytest.mark.slow
async def test_the_sink_and_the_api_start_while_postgres_is_down_and_catch_up_once_it_is_up(
        outage_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    import corevad_stream.http
    from corevad_stream.http import HttpServer, LiveFeed

    monkeypatch.setattr(corevad_stream.http, "STORE_RETRY_S", 0.2)  # the API's next try to open the store
    server = outage_server
    try:
        at = await asyncio.to_thread(fresh_database, server)
        await asyncio.to_thread(server.stop)  # the database exists, but the server is down when the sink starts
        sink = EventStoreSink(at, retry=BackoffPolicy(initial_s=0.05, max_s=0.5, jitter=0))
        api = HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict, store=at,
                         feed=LiveFeed())
        async with sink, api, httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}", timeout=20) as client:
            assert sink.health()["state"] == "failing" and sink.store is None
            for i in range(10):
                await sink.send(_score(i))
            await sink.send(_long_event(1))
            assert sink.health()["pending"] == 11
            down = await client.get("/api/events")
            assert down.status_code == 503 and "not reachable" in down.json()["error"]
            await asyncio.to_thread(server.start)
            await _until(lambda: sink.written == 11 and sink.health()["state"] == "ok", "the late writes")
            assert sink.store is not None and sink.store.count("scores") == 10
            answers: list[Any] = []

            async def listed() -> bool:
                r = await client.get("/api/events")
                answers.append(r.status_code)
                return r.status_code == 200 and [a["id"] for a in r.json()] == ["cam-r-1"]

            async with asyncio.timeout(30):
                while not await listed():
                    await asyncio.sleep(0.1)
    finally:
        await asyncio.to_thread(server.start)


@pytest.mark.slow
async def test_a_frozen_postgres_is_reported_and_never_holds_up_the_alerts(outage_server: Any) -> None:
    from corevad_stream.alert_state import PostgresOpenAlerts

    server = outage_server
    try:
        at = await asyncio.to_thread(fresh_database, server)
        assert at.url is not None
        sink = EventStoreSink(at, stall_s=0.5, retry=BackoffPolicy(initial_s=0.05, max_s=0.5, jitter=0))
        record = PostgresOpenAlerts(at.url, password=at.password, commit_wait_s=0.5)
        assert record.load() == {}
        async with sink:
            await sink.send(_score(0))
            await _until(lambda: sink.written == 1, "the first write")
            server.freeze()  # SIGSTOP: connections hang instead of failing
            try:
                for i in range(1, 20):
                    await sink.send(_score(i))
                await _until(lambda: sink.health()["state"] == "failing", "the store to say it hangs")
                assert "not answered" in sink.health()["last_error"] and sink.health()["pending"] > 0
                t0 = time.monotonic()
                record.set("cam", {"id": "cam-r-1", "camera": "cam"})  # waits its bound, then the alert goes on
                record.set("cam", {"id": "cam-r-2", "camera": "cam"})  # already behind: no second wait
                assert time.monotonic() - t0 < 3.0
            finally:
                server.thaw()
            await _until(lambda: sink.written == 20 and sink.health()["state"] == "ok", "the writes after the thaw")
            assert sink.store is not None and sink.store.count("scores") == 20 and sink.dropped == 0
        record.close()  # waits for what was queued: the later write won
        assert PostgresOpenAlerts(at.url, password=at.password).load() == {"cam": {"id": "cam-r-2", "camera": "cam"}}
    finally:
        server.thaw()


def test_both_backends_give_the_same_answers_to_the_same_writes(tmp_path: Path, postgres_url: str) -> None:
    lite = open_store(StoreLocation(path=tmp_path / "e.sqlite3"))
    pg = open_store(StoreLocation(url=postgres_url, password=os.environ["COREVAD_TEST_PG_PASSWORD"]))
    for store in (lite, pg):
        for k in range(12):  # three cameras, start times tied in pairs (the id breaks the tie), some left open
            ev = _event("new", f"cam{k % 3}-r-{k:02d}", active=True, peak=0.5 + k / 100)
            ev["after"].update(camera=f"cam{k % 3}", start_time=1000.0 + (k // 2) * 10, start_segment=k)
            store.write("events", None, ev, 1000.0 + k)
            if k % 4:
                ev = _event("end", f"cam{k % 3}-r-{k:02d}", active=False, peak=0.9, end_reason="score below")
                ev["after"].update(camera=f"cam{k % 3}", start_time=1000.0 + (k // 2) * 10, end_time=1100.0 + k)
                store.write("events", None, ev, 1100.0 + k)
        store.write("snapshot", "cam0", b"\xff\xd8 zero", 1001.0, alert_id="cam0-r-00")
        for i in range(30):
            store.write("score", "cam1", {"index": i, "start": 990.0 + i, "end": 991.0 + i,
                                          "score": None if i == 7 else i / 30, "label": None if i == 7 else i % 2},
                        990.0 + i)
        store.write("status", "cam1", {"state": "online", "reason": "connected"}, 995.0)
        assert store.acknowledge("cam1-r-01", at=1200.0) and not store.acknowledge("nope")

    def answers(store: EventStore) -> list[Any]:
        return [store.alerts(limit=1000), store.alerts(camera="cam1"), store.alerts(active=True),
                store.alerts(since=1020.0, until=1040.0), store.alerts(before="cam1-r-04", limit=3),
                store.alerts(limit=4, offset=5), store.alert("cam1-r-01"), store.alert("nope"),
                store.scores("cam1", 995.0, 1005.0), store.active_alerts(), store.snapshot("cam0-r-00"),
                [store.count(t) for t in ("alerts", "alert_events", "status", "scores")]]

    expected = answers(lite)
    assert expected[0] and expected[4] and expected[8]  # the comparison below compares something
    assert answers(pg) == expected
    assert json.dumps(answers(pg)[:10]) == json.dumps(expected[:10])  # the same types too (as the API sends them)
    lite.close()
    pg.close()


def test_store_config_errors_name_the_field_and_the_password_never_goes_in_the_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corevad_stream.config import StoreConfig
    from corevad_stream.security import SecretError

    for bad, field in (({"url": "postgresql://u:hunter2@h/db"}, "holds a password"),
                       ({"url": "mysql://u@h/db"}, "must start with postgresql://"),
                       ({"url": "postgresql://u@h"}, "names no database"),
                       ({"url": "postgresql://u@h/db", "path": "x.sqlite3"}, "not both"),
                       ({"password_env": "PW"}, "only with store.url")):
        with pytest.raises(ValueError, match=field):
            StoreConfig(**bad)
    cfg = StoreConfig(url="postgresql://u@h:5432/db", password_env="COREVAD_TEST_STORE_PW")
    with pytest.raises(SecretError, match="COREVAD_TEST_STORE_PW"):
        cfg.location(tmp_path, "p")
    monkeypatch.setenv("COREVAD_TEST_STORE_PW", "s3cret")
    at = cfg.location(tmp_path, "p")
    assert at.url == "postgresql://u@h:5432/db" and at.password == "s3cret" and "s3cret" not in repr(at)
    assert StoreConfig().location(tmp_path, "a/b").path == tmp_path / "events-a-b.sqlite3"


def test_a_snapshot_over_the_bound_is_refused(store_at: StoreLocation) -> None:
    from corevad_stream.store._base import MAX_SNAPSHOT_BYTES

    store = open_store(store_at)
    store.write("events", None, _event("new", "cam-r-3", active=True, peak=0.99), 101.0)
    with pytest.raises(ValueError, match="byte bound"):
        store.write("snapshot", "cam", b"\xff" * (MAX_SNAPSHOT_BYTES + 1), 102.0, alert_id="cam-r-3")
    assert store.snapshot("cam-r-3") is None and store.alert("cam-r-3")["snapshot"] is None  # type: ignore[index]
    store.close()


def test_check_says_whether_the_postgres_store_answers(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from corevad_stream.probes import Level, storage

    def store_line(section: dict[str, str]) -> Any:
        cfg = stream_config([{"name": "yard", "url": "frameless://10"}], store=section)
        [line] = [f for f in storage(cfg) if f.item.startswith("store.")]
        return line

    section = {"url": postgres_url, "password_env": "COREVAD_TEST_PG_PASSWORD"}
    new = store_line(section)
    assert new.level is Level.OK and "new: run creates the tables" in new.message
    open_store(StoreLocation(url=postgres_url, password=os.environ["COREVAD_TEST_PG_PASSWORD"])).close()
    assert "schema version 2" in store_line(section).message
    monkeypatch.setenv("COREVAD_TEST_PG_PASSWORD", "wrong")
    refused = store_line(section)
    assert refused.level is Level.ERROR and "password authentication failed" in refused.message
    monkeypatch.delenv("COREVAD_TEST_PG_PASSWORD")
    unset = store_line(section)
    assert unset.level is Level.ERROR and unset.item == "store.password" and "COREVAD_TEST_PG_PASSWORD" in unset.message


def test_an_open_alert_taken_by_two_monitors_at_once_goes_to_one(store_at: StoreLocation) -> None:
    from corevad_stream.alert_state import open_alert_record

    writer = open_alert_record(store_at)
    for k in range(20):
        writer.set(f"cam{k}", {"id": f"cam{k}-r-1", "camera": f"cam{k}"})
    takers = [open_alert_record(store_at) for _ in range(2)]
    got: list[dict[str, Any]] = [{}, {}]

    def take(n: int) -> None:
        for k in range(20):  # both go for every camera, one at a time
            got[n].update(takers[n].take([f"cam{k}", "no-such-camera"]))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(got[0]) & set(got[1])  # none ended twice
    assert set(got[0]) | set(got[1]) == {f"cam{k}" for k in range(20)} and writer.load() == {}  # none lost
    for r in (writer, *takers):
        r.close()
