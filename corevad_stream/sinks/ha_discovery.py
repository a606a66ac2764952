"""Home Assistant MQTT discovery: each camera appears in Home Assistant with no YAML to write.

Per camera, one device with: an anomaly binary sensor (the retained `state`; the latest alert, with its
explanation, as attributes from `<prefix>/<camera>/alert`), the score, the camera status and model state
as sensors, the snapshot as an MQTT image, an "Armed" switch (command `<prefix>/<camera>/arming/set` ON/OFF,
state from the retained `<prefix>/<camera>/arming`) and a "Snooze" number in minutes (command
`<prefix>/<camera>/snooze/set`; 0 cancels; it shows the minutes left when the arming last changed). Every
entity's availability is `<prefix>/available` (online,
offline, the last will). Configs are retained; a camera removed from the config gets its configs removed
(empty retained payloads) at the next start, from the record of announced cameras in the state directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from corevad.errors import CorevadError
from corevad.files import MIB, read_text_checked

from ..arming import MAX_SNOOZE_MINUTES
from ..messages import topic

log = logging.getLogger(__name__)

ENTITIES = ("anomaly", "score", "status", "model", "snapshot", "arming", "snooze")
_COMPONENTS = {"anomaly": "binary_sensor", "snapshot": "image", "arming": "switch", "snooze": "number"}


def _ids(prefix: str, camera: str, entity: str) -> tuple[str, str]:
    node = f"corevad_{prefix.replace('/', '_')}"
    return node, f"{node}_{camera}_{entity}"


def config_topic(discovery_prefix: str, prefix: str, camera: str, entity: str) -> str:
    component = _COMPONENTS.get(entity, "sensor")
    node, uid = _ids(prefix, camera, entity)
    return f"{discovery_prefix}/{component}/{node}/{uid}/config"


def camera_configs(discovery_prefix: str, prefix: str, camera: str) -> dict[str, dict[str, Any]]:
    """topic -> discovery payload for every entity of one camera."""
    node, _ = _ids(prefix, camera, "")
    status, model = topic(prefix, "status", camera), topic(prefix, "model", camera)
    arming = topic(prefix, "arming", camera)
    device = {"identifiers": [f"{node}_{camera}"], "name": f"{camera} (corevad)", "manufacturer": "corevad",
              "model": "CoReVAD anomaly monitor"}
    common = {"availability_topic": topic(prefix, "available"), "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    entities: dict[str, dict[str, Any]] = {
        "anomaly": {"name": "Anomaly", "state_topic": topic(prefix, "state", camera), "payload_on": "anomalous",
                    "payload_off": "normal", "device_class": "safety",
                    # `unknown` (no score yet, model down, monitor stopped) is neither on nor off.
                    "value_template": "{{ value if value in ('anomalous', 'normal') else None }}",
                    "json_attributes_topic": topic(prefix, "alert", camera)},
        "score": {"name": "Anomaly score", "state_topic": topic(prefix, "score", camera), "state_class": "measurement",
                  "value_template": "{{ value_json.score if value_json.available else None }}"},
        "status": {"name": "Camera status", "state_topic": status,
                   "value_template": "{{ value_json.state }}", "json_attributes_topic": status},
        "model": {"name": "Model state", "state_topic": model, "value_template": "{{ value_json.state }}",
                  "json_attributes_topic": model},
        "snapshot": {"name": "Alert snapshot", "image_topic": topic(prefix, "snapshot", camera),
                     "content_type": "image/jpeg"},
        # On: armed; off: disarmed, snoozed or outside the schedule (the attributes say which, and until when).
        "arming": {"name": "Armed", "command_topic": topic(prefix, "arming/set", camera), "state_topic": arming,
                   "payload_on": "ON", "payload_off": "OFF", "retain": False,
                   "value_template": "{{ 'ON' if value_json.armed else 'OFF' }}", "json_attributes_topic": arming,
                   "icon": "mdi:shield-check"},
        "snooze": {"name": "Snooze", "command_topic": topic(prefix, "snooze/set", camera), "state_topic": arming,
                   "min": 0, "max": MAX_SNOOZE_MINUTES, "step": 1, "mode": "box", "unit_of_measurement": "min",
                   "retain": False, "icon": "mdi:alarm-snooze",
                   "value_template": "{{ [((value_json.until - now().timestamp()) / 60) | round(0, 'ceil'), 0]"
                                     " | max | int if value_json.state == 'snoozed' else 0 }}"},
    }
    out = {}
    for entity, payload in entities.items():
        _, uid = _ids(prefix, camera, entity)
        out[config_topic(discovery_prefix, prefix, camera, entity)] = {**payload, **common, "unique_id": uid,
                                                                        "object_id": uid}
    return out


def removed_camera_topics(record: Path, discovery_prefix: str, prefix: str, cameras: list[str]) -> list[str]:
    """Config topics of cameras announced by an earlier run but no longer configured; updates the record."""
    try:
        previous = (json.loads(read_text_checked(record, limit=MIB, what="Home Assistant discovery record"))
                    if record.is_file() else [])
        if not isinstance(previous, list):
            previous = []
    except (CorevadError, OSError, ValueError) as exc:
        log.warning("Home Assistant discovery record %s unreadable (%s); not removing stale cameras", record, exc)
        previous = []
    gone = [c for c in previous if isinstance(c, str) and c not in cameras]
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(sorted(cameras)), encoding="utf-8")
    except OSError as exc:
        log.warning("cannot write the Home Assistant discovery record %s: %s", record, exc)
    return [config_topic(discovery_prefix, prefix, c, e) for c in gone for e in ENTITIES]
