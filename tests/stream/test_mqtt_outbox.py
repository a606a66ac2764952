"""The on-disk event outbox: FIFO across reopen, bounded with counted drops, one process at a time."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from corevad_stream.sinks.outbox import Outbox, OutboxError, OutboxFullPolicy


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


def test_unusable_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "o.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="not a usable sqlite database"):
        Outbox(bad)
    with pytest.raises(ValueError, match="max_messages"):
        Outbox(tmp_path / "x.sqlite3", max_messages=0)
