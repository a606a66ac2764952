"""Typed message records: their wire form is the JSON the monitor always published (keys, order, rounding)."""

from __future__ import annotations

import json

import pytest

from corevad.alerts import Alert, AlertEvent
from corevad_stream.messages import (
    KIND_POLICY,
    AlertEventRecord,
    AlertRecord,
    EventTiming,
    Message,
    ScoreRecord,
    StatusRecord,
    kinds_where,
    topic,
)
from corevad_stream.sinks.jsonl import message_record
from corevad_stream.sinks.mqtt import encode_payload


def test_score_record_wire_form_keeps_key_order_and_rounding() -> None:
    rec = ScoreRecord(index=3, start=1.0, end=2.0, score=0.5, refined=0.25, label=1.0, raw_label=1, parsed=True,
                      description="d", chosen=2, latency_s=0.123456789, model_s=0.0987654, p_anomalous=0.12345678)
    assert rec.latency_s == 0.123456789  # a float until a sink rounds it
    assert json.dumps(rec.to_json()) == json.dumps({
        "index": 3, "start": 1.0, "end": 2.0, "score": 0.5, "refined": 0.25, "label": 1.0, "raw_label": 1,
        "parsed": True, "description": "d", "chosen": 2, "latency_s": 0.1235, "model_s": 0.0988,
        "available": True, "p_anomalous": 0.123457})
    missing = ScoreRecord(index=4, start=2.0, end=3.0, available=False, error="timeout", reason="slow",
                          latency_s=1.23456, model_s=30.00001)
    assert json.dumps(missing.to_json()) == json.dumps({
        "index": 4, "start": 2.0, "end": 3.0, "score": None, "available": False, "error": "timeout",
        "reason": "slow", "latency_s": 1.2346, "model_s": 30.0})
    assert "p_anomalous" not in ScoreRecord(index=0, start=0, end=1, latency_s=0, model_s=0).to_json()


def test_event_records_serialise_like_the_alert_event_and_carry_their_camera() -> None:
    a = Alert(id="x-r-0", camera="x", start_index=0, start_time=1.0, peak_index=0, peak_score=0.9, score=0.9,
              last_index=0, explanation=("fight",))
    ev = AlertEvent("new", None, a)
    rec = AlertEventRecord.of(ev, EventTiming(segment_end=2.0, model_s=0.1234567891, scored_at=3.0))
    assert rec.camera == "x" and rec.active
    assert rec.to_json() == {**ev.to_dict(), "timing": {"segment_end": 2.0, "model_s": 0.123457, "scored_at": 3.0}}
    restart = AlertEventRecord(type="end", before=a.to_dict(), after={**a.to_dict(), "active": False})
    assert restart.camera == "x" and not restart.active and restart.to_json()["before"] == a.to_dict()
    msg = Message("events", rec)
    assert message_record(msg)["camera"] == "x"  # the JSONL sink files an event under its camera
    assert json.loads(encode_payload(msg)) == rec.to_json()
    assert AlertRecord(a).to_json() == a.to_dict()


def test_the_policy_table_is_what_each_sink_used_to_hard_code() -> None:
    assert kinds_where("retain") == {"available", "state", "status", "snapshot", "model", "alert", "arming"}
    assert kinds_where("store") == {"events", "score", "status", "model", "snapshot"}
    assert kinds_where("feed") == {"events", "state", "status", "model", "score", "snapshot", "group"}
    assert kinds_where("keep") == {"events", "state", "status", "available", "model", "alert", "arming", "group"}
    assert set(KIND_POLICY) == {"available", "events", "score", "state", "status", "snapshot", "stats", "model",
                                "alert", "arming", "group"}


def test_messages_take_retain_from_the_policy_and_build_topics_in_one_place() -> None:
    status = Message("status", StatusRecord(online=True, state="online", reason="", url="rtsp://***@h/",
                                            reconnects=0, time=1.0, monitor="host-a"), camera="gate")
    assert status.retain is True and Message("score", {}, camera="gate").retain is False
    assert Message("state", "normal", camera="gate", retain=False).retain is False  # an explicit choice stays
    assert status.topic("p") == topic("p", "status", "gate") == "p/gate/status" and topic("p", "events") == "p/events"
    assert status.serialised().payload == {"status": "online", "state": "online", "reason": "",
                                           "url": "rtsp://***@h/", "reconnects": 0, "time": 1.0,
                                           "monitor": "host-a"}
    with pytest.raises(ValueError, match="needs a camera"):
        Message("score", {})
    with pytest.raises(ValueError, match="unknown message kind"):
        Message("nope", {})  # type: ignore[arg-type]
