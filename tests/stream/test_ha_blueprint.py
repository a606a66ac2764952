"""The Home Assistant blueprint in docs/ against what corevad really publishes: its trigger topic and snapshot
entity against the MQTT discovery payloads, its templates rendered (strictly: a missing field is an error) on
alert events made by the runtime's own scoring and notifier, new -> update -> end on one notification tag."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeEnvironment

from corevad.alerts import AlertParams, EventType
from corevad.params import CausalParams
from corevad.prompt import parse_answer
from corevad_stream.entities import SegmentJob, SegmentResult
from corevad_stream.messages import AlertEventRecord, Message, topic
from corevad_stream.notify import CameraNotice, Notifier
from corevad_stream.scoring import CameraScoring
from corevad_stream.sinks.ha_discovery import camera_configs, config_topic

BLUEPRINT = Path(__file__).resolve().parents[2] / "docs" / "ha_blueprint_corevad_alert.yaml"
PREFIX, CAMERA = "corevad", "gate"


@dataclass(frozen=True)
class Input:
    """Home Assistant's `!input name` tag: a reference to one of the blueprint's inputs."""

    name: str


class BlueprintLoader(yaml.SafeLoader):
    """yaml.safe_load plus HA's !input tag (HA's own loader knows it; PyYAML refuses unknown tags)."""


BlueprintLoader.add_constructor("!input", lambda loader, node: Input(loader.construct_scalar(node)))


@pytest.fixture(scope="module")
def blueprint() -> dict[str, Any]:
    data = yaml.load(BLUEPRINT.read_text(encoding="utf-8"), Loader=BlueprintLoader)  # noqa: S506 - safe base
    assert isinstance(data, dict)
    return data


def _inputs_used(node: Any) -> list[str]:
    if isinstance(node, Input):
        return [node.name]
    if isinstance(node, dict):
        return [n for v in node.values() for n in _inputs_used(v)]
    if isinstance(node, list):
        return [n for v in node for n in _inputs_used(v)]
    return []


def _events() -> list[dict[str, Any]]:
    """new, update, end of one alert, as the runtime publishes them (scoring + the notifier's fields)."""
    sc = CameraScoring(CAMERA, params=CausalParams(smooth_length=1), use_features=False, lrc=False,
                       alerts=AlertParams(open_threshold=0.9, close_threshold=0.5, close_after_s=0, cooldown_s=0))
    notifier = Notifier(public_url="https://monitor.example.net",
                        cameras={CAMERA: CameraNotice(title_name="Front gate", snapshots=True)})
    out = []
    for i, text in enumerate(["Anomalous scenes.", "Anomalous scenes. A man climbs the fence. He runs.",
                              "Normal scenes. A quiet gate."]):
        job = SegmentJob(camera=CAMERA, index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30)
        res = sc.process(SegmentResult(job, parse_answer(text), None, None, None, None, 0.0, p_anomalous=0.995))
        out += [notifier.complete(m).json_payload() for m in res.messages if isinstance(m.payload, AlertEventRecord)]
    assert [e["type"] for e in out] == ["new", "update", "end"]  # type: ignore[index]
    return out  # type: ignore[return-value]


def test_inputs_declared_and_used(blueprint: dict[str, Any]) -> None:
    meta = blueprint["blueprint"]
    assert meta["domain"] == "automation"
    declared = set(meta["input"])
    used = set(_inputs_used({k: v for k, v in blueprint.items() if k != "blueprint"}))
    assert used == declared  # no input without a use, no !input without a declaration
    assert meta["input"]["notify_device"]["selector"]["device"]["integration"] == "mobile_app"
    # The mobile_app notify device action takes type, message (required), title and data, nothing else
    # (NOTIFY_SCHEMA in Home Assistant's homeassistant/components/mobile_app/device_action.py).
    (action,) = blueprint["action"]
    assert (action["domain"], action["type"], action["device_id"]) == ("mobile_app", "notify", Input("notify_device"))
    assert "message" in action and set(action) <= {"device_id", "domain", "type", "message", "title", "data"}


def test_trigger_and_snapshot_entity_match_the_discovery_payloads(blueprint: dict[str, Any]) -> None:
    configs = camera_configs("homeassistant", PREFIX, CAMERA)
    available = {p["availability_topic"] for p in configs.values()}
    assert available == {topic(PREFIX, "available")}  # every entity names the same prefix
    (trigger,) = blueprint["trigger"]
    assert trigger["platform"] == "mqtt" and trigger["topic"] == Input("events_topic")
    default = blueprint["blueprint"]["input"]["events_topic"]["default"]
    # The topic the runtime publishes alert events on, with the prefix the discovery payloads use.
    assert default == topic(PREFIX, "events") == Message("events", {"type": "new"}).topic(PREFIX)
    snap_topic = config_topic("homeassistant", PREFIX, CAMERA, "snapshot")
    component = snap_topic.split("/")[1]
    assert configs[snap_topic]["image_topic"] == topic(PREFIX, "snapshot", CAMERA)
    (wanted,) = blueprint["blueprint"]["input"]["snapshot_image"]["selector"]["entity"]["filter"]
    assert wanted == {"integration": "mqtt", "domain": component}


def test_every_event_field_the_templates_read_is_in_the_published_events(blueprint: dict[str, Any]) -> None:
    text = BLUEPRINT.read_text(encoding="utf-8")
    paths = set(re.findall(r"\bevent((?:\.[a-z_]+)+)", text))
    assert {".title", ".explanation", ".severity", ".snapshot_url", ".event_url", ".after.id"} <= paths
    for ev in _events():
        for path in paths:
            node: Any = ev
            for key in path.strip(".").split("."):
                assert isinstance(node, dict) and key in node, f"event{path} is not in a {ev['type']} event"
                node = node[key]
    # The event types the condition names are the tracker's.
    assert set(re.findall(r"'(new|update|end)'", text)) == set(typing.get_args(EventType))


def _render(node: Any, env: NativeEnvironment, context: dict[str, Any]) -> Any:
    if isinstance(node, str) and "{" in node:
        return env.from_string(node).render(**context)
    if isinstance(node, dict):
        return {k: _render(v, env, context) for k, v in node.items()}
    if isinstance(node, list):
        return [_render(v, env, context) for v in node]
    return node


@pytest.mark.parametrize("snapshot_image", ["", "image.corevad_corevad_gate_snapshot"])
def test_new_update_end_render_one_notification(blueprint: dict[str, Any], snapshot_image: str) -> None:
    env = NativeEnvironment(undefined=StrictUndefined)  # Home Assistant renders to native types too
    inputs = {"cameras": [CAMERA], "snapshot_image": snapshot_image, "notify_on_end": True}
    sent = []
    for ev in _events():
        context: dict[str, Any] = {"trigger": {"payload_json": ev}}
        for name, value in blueprint["variables"].items():
            context[name] = inputs[value.name] if isinstance(value, Input) else _render(value, env, context)
        (cond,) = blueprint["condition"]
        assert _render(cond["value_template"], env, context) is True
        (action,) = blueprint["action"]
        sent.append(_render({k: v for k, v in action.items() if k != "device_id"}, env, context))
    new, update, end = sent
    assert new["title"] == "Front gate: anomaly"  # the first segment had no description yet
    assert update["title"] == "Front gate: A man climbs the fence."
    assert update["message"] == "A man climbs the fence. He runs." and end["title"].startswith("Ended: Front gate")
    assert new["data"]["tag"] == update["data"]["tag"] == end["data"]["tag"] == f"corevad-{CAMERA}-0"
    assert (new["data"]["alert_once"], update["data"]["alert_once"]) == (False, True)  # updates are quiet
    image = ("/api/image_proxy/image.corevad_corevad_gate_snapshot" if snapshot_image
             else f"https://monitor.example.net/api/events/{CAMERA}-0/snapshot")
    assert {s["data"]["image"] for s in sent} == {image}
    assert new["data"]["clickAction"] == f"https://monitor.example.net/#event={CAMERA}-0"
    assert new["data"]["priority"] == "high" and new["data"]["push"]["interruption-level"] == "time-sensitive"


def test_other_cameras_and_ends_can_be_left_out(blueprint: dict[str, Any]) -> None:
    env = NativeEnvironment(undefined=StrictUndefined)
    (cond,) = blueprint["condition"]
    results = []
    for cameras, on_end in ((["door"], True), ([CAMERA], False)):
        for ev in _events():
            context = {"event": ev, "cameras": cameras, "notify_on_end": on_end}
            results.append((tuple(cameras), ev["type"], _render(cond["value_template"], env, context)))
    assert [r for r in results if r[2]] == [((CAMERA,), "new", True), ((CAMERA,), "update", True)]
