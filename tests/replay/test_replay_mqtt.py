"""Replay with MQTT switched on: every score and alert event reaches a real Mosquitto subscriber."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corevad.benchmarks import load_benchmark, load_responses
from corevad.models.replay import ReplayBackend
from corevad_stream.replay import camera_names, frameless_inputs, run_replay
from corevad_stream.testing import Mosquitto, MqttCollector

pytestmark = [pytest.mark.services, pytest.mark.data]


async def test_replay_publishes_scores_and_alert_events_over_mqtt(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "ucf_crime"
    videos = [v for v in load_benchmark("ucf-crime", d / "test_annotations.tsv") if v.frames < 2500][:4]
    responses = load_responses(d / "VLM_responses_LRC_ucf.json")
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        async with MqttCollector(broker.host, broker.port, ["replay-test/#"]) as sub:
            result = await run_replay(
                frameless_inputs(videos), backend=ReplayBackend(responses), concurrency=4, timeout_s=120,
                refinement={"smooth_length": 5, "smooth_sigma": 2.0},
                alerts={"open_threshold": 0.8, "close_threshold": 0.5, "close_after_s": 2.0, "cooldown_s": 5.0},
                mqtt={"host": broker.host, "port": broker.port, "prefix": "replay-test",
                      "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
            names = camera_names(videos)
            n_alerts = sum(len(v.alerts) for v in result.videos)
            assert n_alerts > 0
            await sub.wait_for(lambda: sum(len(sub.on(f"replay-test/{names[v.gt.name]}/score"))
                                           for v in result.videos) >= result.segments
                               and len(sub.on("replay-test/events")) >= 2 * n_alerts, timeout=60,
                               what="every score and at least new+end per alert")
        ends = [json.loads(m.payload) for m in sub.on("replay-test/events")]
        ends = [e["after"] for e in ends if e["type"] == "end"]
        assert sorted((e["camera"], e["start_segment"]) for e in ends) == sorted(
            (names[v.gt.name], a.start_segment) for v in result.videos for a in v.alerts)
    finally:
        broker.kill()
