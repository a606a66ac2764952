"""SIGKILL mid-alert, then restart: the orphaned alert gets its `end`, and alert ids of the two runs differ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from corevad_stream.alert_state import OpenAlerts
from corevad_stream.store import SqliteStore

pytestmark = pytest.mark.slow


def _start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "corevad_stream.cli", "run", "-c", str(cfg), "--no-live"],
                                stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())


async def test_sigkill_mid_alert_then_restart_ends_the_orphan(mosquitto, mqtt_collector, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    responses = tmp_path / "answers.json"
    responses.write_text(json.dumps({"gate": ["Anomalous scenes.\nA man climbs over the gate."] * 20_000}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "cameras": [{"name": "gate", "url": "frameless://", "rate": "native"}],
        "model": {"vlm": {"backend": "replay", "responses": str(responses)}, "clip": None},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "prefix": "k", "keepalive_s": 5,
                 "outbox": {"path": str(tmp_path / "outbox.sqlite")}},
        "metrics": {"enabled": False}, "refinement": {"smooth_length": 1},
        "runtime": {"segment_seconds": 0.25, "state_dir": str(tmp_path / "state")},
    }))
    sub = await mqtt_collector(mosquitto, topics=("k/#",))

    def events() -> list[dict[str, Any]]:
        return [json.loads(p) for p in sub.payloads("k/events")]

    log = tmp_path / "monitor.log"
    first = _start(cfg, log)
    try:
        # The state message follows the alert's `new` event: kill once both are out, mid-alert.
        await sub.wait_for(lambda: any(e["type"] == "new" for e in events())
                           and sub.payloads("k/gate/state")[-1:] == [b"anomalous"],
                           timeout=60, what="first alert and its anomalous state")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    orphan = next(e["after"] for e in events() if e["type"] == "new")
    assert not any(e["type"] == "end" for e in events())  # killed: nobody ended it
    assert sub.payloads("k/gate/state")[-1] == b"anomalous"  # and the retained state still says so
    # The broker's last will: subscribers learn the monitor is gone (their rule: status/state then unknown).
    await sub.wait_for(lambda: sub.payloads("k/available")[-1:] == [b"offline"], timeout=30, what="last will")

    restarted_at = time.time()
    second = _start(cfg, log)
    try:
        # Two distinct alerts: the first run's `new` may come again from its outbox (delivered, not yet acked
        # when it was killed: at least once), and that copy is not the second run's alert.
        await sub.wait_for(lambda: len({e["after"]["id"] for e in events() if e["type"] == "new"}) >= 2,
                           timeout=60, what="second alert")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    evs = events()
    ended = [e for e in evs if e["type"] == "end" and e["after"]["id"] == orphan["id"]]
    assert len(ended) == 1, log.read_text()[-2000:]
    assert ended[0]["after"]["end_reason"] == "monitor restarted" and ended[0]["after"]["active"] is False
    # The orphan ends when the second run found it, not at some stale or made-up time.
    end_time = ended[0]["after"]["end_time"]
    assert orphan["start_time"] < restarted_at <= end_time <= time.time(), (orphan, end_time, restarted_at)
    news = [e["after"]["id"] for e in evs if e["type"] == "new"]
    assert len(set(news)) == 2 and len(news) <= 3  # both start at segment 0: the run id keeps them apart
    assert evs.index(ended[0]) < max(i for i, e in enumerate(evs) if e["type"] == "new")  # ended before the new
    assert second.returncode == 0
    # A monitor that stopped watching leaves `unknown`, not a stale normal/anomalous, as the retained state.
    await sub.wait_for(lambda: sub.payloads("k/gate/state")[-1:] == [b"unknown"], timeout=30, what="unknown")
    store = SqliteStore(tmp_path / "state" / "events-k.sqlite3")
    try:
        assert OpenAlerts(store.path).load() == {}  # the graceful stop ended everything
        stored = store.alert(orphan["id"])  # one store: the history shows the orphan ended by the restart
        assert stored is not None and stored["end_reason"] == "monitor restarted" and not stored["active"]
        assert stored["end_time"] == end_time  # the history holds the same end as the event
    finally:
        store.close()
