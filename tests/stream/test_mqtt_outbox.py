"""The on-disk event outbox: FIFO across reopen, bounded with counted drops, one process at a time; a count
that follows the committed file when the disk fails, a damaged file set aside with what could be read, and
the in-memory tail (EventQueue) that keeps events the disk refuses."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from corevad_stream.sinks.outbox import EventQueue, Outbox, OutboxError, OutboxFullPolicy
from corevad_stream.testing.fs_faults import ext4_image, fill, shut_down, small_tmpfs


def topics(box: Outbox) -> list[str]:
    return [e.topic for e in box.peek(1000)]


def test_fifo_ack_and_order_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        for i in range(5):
            assert box.append(f"t/{i}", f"p{i}".encode(), qos=1, retain=i == 4)
        first = box.peek(2)
        assert [e.topic for e in first] == ["t/0", "t/1"] and first[0].payload == b"p0" and first[0].qos == 1
        box.ack(first[0].id)
        box.ack(first[0].id)  # acking twice is harmless
        assert len(box) == 4
    with Outbox(path) as box:
        assert len(box) == 4
        assert topics(box) == ["t/1", "t/2", "t/3", "t/4"]
        assert box.peek(10)[-1].retain and not box.peek(10)[0].retain
        for e in box.peek(10):
            box.ack(e.id)
        box.append("t/5", b"x", qos=0)
        # ids keep growing after everything was deleted, so order holds across restarts.
        assert box.peek(1)[0].id > first[1].id


def test_bound_drop_oldest_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=3) as box:
        for i in range(5):
            assert box.append(f"t/{i}", b"", qos=1)
        assert topics(box) == ["t/2", "t/3", "t/4"] and box.dropped == 2
    assert [r.levelno for r in caplog.records if "OUTBOX FULL" in r.getMessage()] == [logging.ERROR] * 2


def test_bound_drop_newest_refuses(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=2, policy=OutboxFullPolicy.DROP_NEWEST) as box:
        assert [box.append(f"t/{i}", b"", qos=1) for i in range(4)] == [True, True, False, False]
        assert topics(box) == ["t/0", "t/1"] and box.dropped == 2


def test_one_process_per_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom corevad_stream.sinks.outbox import Outbox\n"
         f"box = Outbox({str(path)!r})\nprint('open', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(OutboxError, match="in use by another process"):
            Outbox(path)
    finally:
        holder.kill()
        holder.wait()
    with Outbox(path) as box:  # the lock dies with its process
        assert len(box) == 0


def test_a_file_that_is_not_a_database_is_set_aside_and_a_new_outbox_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "o.sqlite3"
    garbage = b"this is not a database" * 100
    bad.write_bytes(garbage)
    with Outbox(bad) as box:
        assert len(box) == 0 and box.append("t/new", b"x", qos=1)
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("o.sqlite3.bad-")]
    assert kept.read_bytes() == garbage  # kept for a person, never deleted
    assert [r.levelno for r in caplog.records if "is damaged" in r.getMessage()] == [logging.ERROR]  # said once
    with pytest.raises(ValueError, match="max_messages"):
        Outbox(tmp_path / "x.sqlite3", max_messages=0)


def test_a_damaged_outbox_keeps_the_messages_that_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        for i in range(60):
            box.append(f"t/{i}", bytes([i]) * 3000, qos=1)  # ~ one 4 kB page per message
    half = path.stat().st_size // 2 // 4096 * 4096
    with open(path, "r+b") as f:  # the disk scrambled the file's second half
        f.seek(half)
        f.write(b"\xff" * half)
    with Outbox(path) as box:
        kept = box.peek(1000)
        assert 0 < len(kept) < 60 and len(box) == len(kept)
        assert [e.topic for e in kept] == [f"t/{i}" for i in range(len(kept))]  # the oldest, in order
        assert all(e.payload == bytes([i]) * 3000 for i, e in enumerate(kept))
        box.append("t/next", b"n", qos=1)
        assert box.peek(1000)[-1].id > kept[-1].id  # ids go on after the kept ones
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("o.sqlite3.bad-")]) == 1


def _rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def test_the_count_follows_the_committed_file_when_the_disk_is_full(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "state", size_kb=256) as state:
        path = state / "o.sqlite3"
        with Outbox(path) as box:
            for i in range(5):
                box.append(f"t/{i}", b"x" * 100, qos=1)
            filler = fill(state)
            failed = 0
            for i in range(40):  # big messages: the WAL must grow, and cannot
                try:
                    box.append(f"big/{i}", b"y" * 20_000, qos=1)
                except sqlite3.Error:
                    failed += 1
                assert len(box) == _rows(path)  # never ahead of (or behind) what was committed
            assert failed > 0
            for entry in box.peek(1000) * 3:  # acks, each three times, on the full disk
                try:
                    box.ack(entry.id)
                except sqlite3.Error:
                    pass
                assert 0 <= len(box) == _rows(path)
            filler.unlink()
            assert box.append("t/after", b"z", qos=1) and len(box) == _rows(path)


def test_events_the_disk_refuses_wait_in_memory_in_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path / "state", size_kb=1024) as state:
        queue = EventQueue(Outbox(state / "o.sqlite3"))
        queue.append("e/0", b"0", qos=1)
        filler = fill(state)
        for i in range(1, 30):
            queue.append(f"e/{i}", bytes(5000), qos=1)
        health = queue.health()
        assert health.state == "failing" and health.unsaved > 0 and health.failures >= 1 and health.last_error
        assert len(queue) == 30  # nothing lost: disk and memory together
        assert [r for r in caplog.records if "FAILS" in r.getMessage() and r.levelno == logging.ERROR]
        filler.unlink()
        queue.append("e/30", b"30", qos=1)  # space is back: the memory tail goes to disk first, in order
        assert queue.health().state == "ok" and queue.health().unsaved == 0
        topics = []
        while batch := queue.peek(7):
            for entry in batch:
                topics.append(entry.topic)
                queue.ack(entry)
        assert topics == [f"e/{i}" for i in range(31)] and len(queue) == 0
        queue.close()


def test_events_are_delivered_from_memory_when_the_disk_dies(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    with ext4_image(tmp_path / "state") as state:
        queue = EventQueue(Outbox(state / "o.sqlite3"))
        queue.append("e/0", b"0", qos=1)
        [first] = queue.peek(10)
        shut_down(state)  # every write fails from now on, reads too
        queue.ack(first)  # delivered, but the disk cannot forget it: not sent again in this run
        for i in range(1, 6):
            queue.append(f"e/{i}", str(i).encode(), qos=1)
        assert queue.health().state == "failing" and queue.health().unsaved == 5 and queue.health().unacked == 1
        assert len(queue) == 5
        delivered = []
        while batch := queue.peek(2):
            for entry in batch:
                delivered.append(entry.payload)
                queue.ack(entry)
        assert delivered == [b"1", b"2", b"3", b"4", b"5"] and len(queue) == 0
        queue.close()  # must not raise on the dead disk
    assert any("sent again at the next start" in r.getMessage() for r in caplog.records)
