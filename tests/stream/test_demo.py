"""`corevad-stream demo`: its own history, MQTT prefix and outbox (never the real monitor's), and --stay."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from corevad_stream.config import config_from_dict
from corevad_stream.demo import DEMO_PREFIX, demo_config
from corevad_stream.testing import free_port

ANSWERS = Path("ucf_crime") / "VLM_responses_LRC_ucf.json"


def test_demo_config_keeps_state_prefix_and_outbox_apart_from_a_real_monitor(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    real = config_from_dict({"cameras": [{"name": "door", "url": "rtsp://cam/s"}], "mqtt": {"host": "127.0.0.1"}})
    data, _ = demo_config(shared_data / ANSWERS, ["Explosion020_x264"], speed=1.0, mqtt_host="127.0.0.1",
                          mqtt_port=1, prefix=DEMO_PREFIX, text_context=False, metrics_port=0)
    demo = config_from_dict(data)
    assert real.mqtt is not None and demo.mqtt is not None
    assert demo.mqtt.prefix == "corevad-demo" != real.mqtt.prefix
    assert demo.runtime.state_path() == tmp_path / "corevad" / "demo" != real.runtime.state_path()
    real_store = real.store.db_path(real.runtime.state_path(), real.mqtt.prefix)
    demo_store = demo.store.db_path(demo.runtime.state_path(), demo.mqtt.prefix)
    assert demo_store.parent == tmp_path / "corevad" / "demo" and demo_store != real_store
    assert demo.mqtt.outbox_path().parent == demo_store.parent
    # Even given the real monitor's prefix, the demo's files stay in its own folder.
    data, _ = demo_config(shared_data / ANSWERS, ["Explosion020_x264"], speed=1.0, mqtt_host="127.0.0.1",
                          mqtt_port=1, prefix="corevad", text_context=False, metrics_port=0)
    same_prefix = config_from_dict(data)
    assert same_prefix.mqtt is not None and same_prefix.mqtt.outbox_path() != real.mqtt.outbox_path()
    assert same_prefix.store.db_path(same_prefix.runtime.state_path(), "corevad") != real_store


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def _wait_line(lines: queue.Queue[str], seen: list[str], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r} within {timeout} s; output:\n{''.join(seen)[-3000:]}")


@pytest.mark.slow
async def test_demo_alerts_land_in_its_own_store_and_prefix_and_stay_keeps_the_page(  # type: ignore[no-untyped-def]
        mosquitto, mqtt_collector, shared_data: Path, tmp_path: Path) -> None:
    import asyncio

    sub = await mqtt_collector(mosquitto, topics=("#",))
    port = free_port()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "corevad_stream.cli", "demo", "--responses", str(shared_data / ANSWERS),
         "--video", "Explosion020_x264", "--video", "Shooting018_x264", "--speed", "20", "--labels-only",
         "--mqtt-port", str(mosquitto.port), "--metrics-port", str(port), "--no-live", "--stay"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        await asyncio.to_thread(_wait_line, lines, seen, f"the review page stays up on http://127.0.0.1:{port}/",
                                120)
        # The replay is over, the process is still serving: the page and the demo's history answer.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            page = await client.get("/")
            events = (await client.get("/api/events")).json()
        assert page.status_code == 200 and "<html" in page.text.lower()
        cams = {e["camera"] for e in events}
        assert cams == {"Explosion020_x264", "Shooting018_x264"}, events
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert rc == 0, "".join(seen)[-3000:]
    # MQTT: everything under the demo's own prefix, nothing under the real monitor's `corevad/`.
    await sub.wait_for(lambda: sub.payloads("corevad-demo/available")[-1:] == [b"offline"], timeout=30,
                       what="offline")
    news = [json.loads(p) for p in sub.payloads("corevad-demo/events")]
    assert {e["after"]["camera"] for e in news if e["type"] == "new"} == cams
    assert not [t for t in sub.seen_topics() if t.startswith("corevad/")]
    # Files: the demo's folder holds its store (with these alerts) and outbox; the real monitor's are untouched.
    demo_dir = tmp_path / "state" / "corevad" / "demo"
    store = demo_dir / "events-corevad-demo.sqlite3"
    with sqlite3.connect(store) as db:
        stored = {row[0] for row in db.execute("SELECT DISTINCT camera FROM alerts")}
    assert stored == cams
    assert (demo_dir / "mqtt-outbox-corevad-demo.sqlite3").exists()
    real_dir = tmp_path / "state" / "corevad"
    assert sorted(p.name for p in real_dir.iterdir()) == ["demo"]
