"""Notification fields of alert events: severity bands, titles, links (metrics.public_url), the alert's
P(Anomalous) carried by scoring, and the end events of alerts a previous run left open."""

from __future__ import annotations

from pathlib import Path

import pytest
from stream_doubles import ScriptedBackend, stream_config

from corevad.alerts import Alert, AlertEvent, AlertParams
from corevad.params import CausalParams
from corevad.prompt import parse_answer
from corevad_stream import App, MemorySink
from corevad_stream.alert_state import OpenAlerts
from corevad_stream.config import ConfigError, config_from_dict
from corevad_stream.entities import SegmentJob, SegmentResult
from corevad_stream.messages import AlertEventRecord, Message
from corevad_stream.notify import (
    NO_EXPLANATION,
    SEVERITY_BANDS,
    TITLE_SENTENCE_MAX,
    CameraNotice,
    Notifier,
    first_sentence,
    severity,
)


@pytest.mark.parametrize(("peak", "p", "level"), [
    (1.0, None, "high"), (0.99, None, "high"), (0.98, None, "medium"), (0.8, None, "medium"), (0.79, None, "low"),
    (0.999, 0.995, "high"), (0.999, 0.9, "medium"),  # the model's own probability caps the score
    (0.999, 0.2, "low"), (0.85, 1.0, "medium"), (0.0, None, "low"), (float("nan"), None, "low"),
])
def test_severity_bands(peak: float, p: float | None, level: str) -> None:
    assert severity(peak, p) == level


def test_the_bands_run_from_the_top_and_cover_every_score() -> None:
    floors = [floor for _name, floor in SEVERITY_BANDS]
    assert floors == sorted(floors, reverse=True) and floors[-1] == 0.0
    assert len({name for name, _ in SEVERITY_BANDS}) == len(SEVERITY_BANDS)


@pytest.mark.parametrize(("text", "first"), [
    ("A man falls. He lies still.", "A man falls."),
    ("Smoke rises from a 2.5 m crate!  Nobody reacts.", "Smoke rises from a 2.5 m crate!"),
    ("no full stop at all", "no full stop at all"),
    ("  spread\nover   lines. next", "spread over lines."),
    ("", ""),
])
def test_first_sentence(text: str, first: str) -> None:
    assert first_sentence(text) == first


def test_a_long_first_sentence_is_cut_at_a_word_with_an_ellipsis() -> None:
    long = "A delivery van reverses " + "very " * 40 + "slowly into the gate."
    cut = first_sentence(long)
    assert len(cut) <= TITLE_SENTENCE_MAX and cut.endswith("…") and cut.removesuffix("…").strip() in long
    assert not cut.removesuffix("…").endswith(" ")


def _alert(**kw: object) -> Alert:
    fields: dict = {"id": "gate-r1-4", "camera": "gate", "start_index": 4, "start_time": 4.0, "peak_index": 5,
                    "peak_score": 0.999, "score": 0.999, "last_index": 5,
                    "explanation": ("A man climbs the fence. He drops a bag.", "Someone runs.")}
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


def test_notice_fields_with_and_without_a_public_url() -> None:
    rec = AlertEventRecord.of(AlertEvent("new", None, _alert()), p_anomalous=0.93)
    cams = {"gate": CameraNotice(title_name="Front gate", snapshots=True)}
    with_url = Notifier(public_url="https://monitor.example.net/corevad/", cameras=cams).notice(rec)
    assert with_url.title == "Front gate: A man climbs the fence."
    assert with_url.explanation == "A man climbs the fence. He drops a bag." and with_url.severity == "medium"
    assert with_url.event_url == "https://monitor.example.net/corevad/#event=gate-r1-4"
    assert with_url.snapshot_url == "https://monitor.example.net/corevad/api/events/gate-r1-4/snapshot"
    bare = Notifier(public_url=None, cameras=cams).notice(rec)
    assert (bare.event_url, bare.snapshot_url) == (None, None) and bare.title == with_url.title
    # The wire form: the fields join the event's top level, beside type/before/after and p_anomalous.
    wire = Notifier(public_url=None).complete(Message("events", rec)).json_payload()
    assert isinstance(wire, dict)
    assert {"title", "explanation", "severity", "snapshot_url", "event_url"} <= wire.keys()
    assert wire["title"] == "gate: A man climbs the fence." and wire["p_anomalous"] == 0.93  # no display name


def test_notice_edge_cases() -> None:
    odd = _alert(id="gate/ä b", explanation=())
    n = Notifier(public_url="http://10.0.0.2:9108",
                 cameras={"gate": CameraNotice(title_name="gate", snapshots=False)}).notice(
        AlertEventRecord.of(AlertEvent("new", None, odd)))
    assert n.title == f"gate: {NO_EXPLANATION}" and n.explanation == ""  # a verdict without a description
    assert n.event_url == "http://10.0.0.2:9108/#event=gate%2F%C3%A4%20b"  # the page decodes it
    assert n.snapshot_url is None  # the camera keeps no snapshots: no link to a 404
    with pytest.raises(ValueError, match="http"):
        Notifier(public_url="monitor.lan")


def test_snapshot_links_follow_what_the_worker_keeps() -> None:
    cfg = config_from_dict({"cameras": [{"name": "a", "url": "rtsp://127.0.0.1:9/a", "display_name": " Yard "},
                                        {"name": "b", "url": "frameless://30"},
                                        {"name": "c", "url": "rtsp://127.0.0.1:9/c", "alerts": {"snapshot": False}}]})
    n = Notifier.from_config(cfg)
    assert n.cameras == {"a": CameraNotice("Yard", True), "b": CameraNotice("b", False),
                         "c": CameraNotice("c", False)}
    off = Notifier.from_config(config_from_dict({"cameras": [{"name": "a", "url": "rtsp://127.0.0.1:9/a"}],
                                                  "alerts": {"snapshot": False}}))
    assert off.cameras["a"].snapshots is False and off.camera("added-later").snapshots is False


@pytest.mark.parametrize(("section", "value", "says"), [
    ("metrics", {"public_url": "ftp://monitor"}, "metrics.public_url: 'ftp://monitor': expected http(s)"),
    ("metrics", {"public_url": "http://user:pw@monitor"}, "metrics.public_url: holds credentials"),
    ("metrics", {"public_url": "http://monitor/?x=1"}, "metrics.public_url: 'http://monitor/?x=1': no query"),
    ("camera", {"display_name": "two\nlines"}, "cameras.0.display_name: holds a control character"),
    ("camera", {"display_name": "x" * 81}, "cameras.0.display_name: is 81 characters; at most 80"),
])
def test_bad_notification_config_is_one_line(section: str, value: dict, says: str) -> None:
    cam = {"name": "a", "url": "frameless://", **(value if section == "camera" else {})}
    data: dict = {"cameras": [cam], **({"metrics": value} if section == "metrics" else {})}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="c.yaml")
    assert "\n" not in str(info.value) and says in str(info.value), str(info.value)
    assert "pw" not in str(info.value)


def test_scoring_carries_the_alerts_highest_p_anomalous() -> None:
    from corevad_stream.scoring import CameraScoring

    sc = CameraScoring("c", params=CausalParams(smooth_length=1), use_features=False, lrc=False,
                       alerts=AlertParams(open_threshold=0.9, close_threshold=0.5, close_after_s=0, cooldown_s=0,
                                          update_min_delta=0.0))
    events: list[AlertEventRecord] = []
    # (answer, P(Anomalous)): an alert over segments 1-3 (p 0.7, 0.95, None), ended by segment 4; a second
    # alert from segment 5 starts its own maximum.
    script = [("Normal scenes. A yard.", 0.1), ("Anomalous scenes. A fight.", 0.7),
              ("Anomalous scenes. A fight.", 0.95), ("Anomalous scenes. A fight.", None),
              ("Normal scenes. A yard.", 0.05), ("Anomalous scenes. A fire.", 0.6), ("Normal scenes. A yard.", 0.1)]
    for i, (text, p) in enumerate(script):
        job = SegmentJob(camera="c", index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30)
        out = sc.process(SegmentResult(job, parse_answer(text), None, None, None, None, 0.0, p_anomalous=p))
        events += [m.payload for m in out.messages if isinstance(m.payload, AlertEventRecord)]
    events += [m.payload for m in sc.finish().messages if isinstance(m.payload, AlertEventRecord)]
    seen = [(e.type, e.after_json()["start_segment"], e.p_anomalous) for e in events]
    assert seen[0] == ("new", 1, 0.7)
    first = [s for s in seen if s[1] == 1]
    assert first[-1][0] == "end" and first[-1][2] == 0.95  # the highest of its segments; None did not reset it
    second = [s for s in seen if s[1] == 5]
    assert second[0] == ("new", 5, 0.6) and second[-1][2] == 0.6  # a new alert: its own maximum


async def test_the_end_of_an_alert_a_previous_run_left_open_carries_the_fields_too(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite3"
    cfg = stream_config([{"name": "gate", "url": "frameless://0", "display_name": "Front gate"}],
                        store={"path": str(db)}, metrics={"enabled": False, "public_url": "http://10.0.0.2:9108"})
    left = OpenAlerts(db)
    left.load()
    left.set("gate", _alert().to_dict())
    left.close()
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(), sinks=[sink]) as app:
        await app.wait_finished(timeout=30)
    ends = [m.payload for m in sink.of("events")]
    assert len(ends) == 1
    end = ends[0]
    assert isinstance(end, dict) and end["type"] == "end" and end["after"]["end_reason"] == "monitor restarted"
    assert end["title"] == "Front gate: A man climbs the fence." and end["severity"] == "high"  # peak only
    assert end["event_url"] == "http://10.0.0.2:9108/#event=gate-r1-4"
    assert end["snapshot_url"] is None  # a frame-less camera keeps no snapshots
