"""The sinks a config asks for (JSONL file, event store, MQTT) plus the live page's feed, in that order."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import StreamConfig
from ..store import StoreLocation
from .base import Sink


def build_sinks(cfg: StreamConfig, *, prefix: str, store: StoreLocation, live_feed: Sink | None,
                from_config: bool = True) -> list[Sink]:
    """from_config False: only the live feed (the caller brings its own sinks). store: where the history goes
(StoreConfig.location). The app gives MQTT sinks of its prefix their command handler (App.start)."""
    sinks: list[Sink] = []
    if from_config and cfg.jsonl is not None:
        from .jsonl import JsonlSink

        sinks.append(JsonlSink(cfg.jsonl.path, kinds=set(cfg.jsonl.kinds) if cfg.jsonl.kinds else None,
                               prefix=prefix))
    if from_config and cfg.store.enabled:
        from .store import EventStoreSink

        sinks.append(EventStoreSink(store, retention=cfg.store.retention(), queue_size=cfg.store.queue))
    if from_config and cfg.mqtt is not None:
        from .mqtt import MqttSink

        sinks.append(MqttSink(cfg.mqtt, outbox_path=cfg.mqtt.outbox_path(cfg.runtime.state_path()),
                              cameras=[c.name for c in cfg.enabled_cameras()]))
    if live_feed is not None:
        sinks.append(live_feed)
    return sinks


class SinkHealth:
    """What the sinks say of their disks, for the stats, /metrics and /api/model: the event store's health and
    the MQTT sink's counters (its outbox health among them). None for a sink that is not there."""

    def __init__(self, sinks: list[Sink]) -> None:
        from .mqtt import MqttSink
        from .store import EventStoreSink

        self.store_sink = next((s for s in sinks if isinstance(s, EventStoreSink)), None)
        self.mqtt_sink = next((s for s in sinks if isinstance(s, MqttSink)), None)

    def store(self) -> dict[str, Any] | None:
        return None if self.store_sink is None else self.store_sink.health()

    def mqtt(self) -> dict[str, Any] | None:
        return None if self.mqtt_sink is None else dataclasses.asdict(self.mqtt_sink.stats())

    def storage(self) -> dict[str, Any]:
        """The event store's and the MQTT outbox's health (state ok/failing, since, pending): None when off."""
        return {"store": self.store(),
                "outbox": None if self.mqtt_sink is None else self.mqtt_sink.stats().outbox}
