"""Prometheus metrics: per-camera counters read at scrape time (served by corevad_stream/http.py).

Counters live in plain CameraCounters fields updated by the stages; a custom collector reads them when
/metrics is scraped, so the hot paths never touch prometheus-client objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .entities import CameraCounters, CameraStatus
from .health import ModelHealth, ModelState

log = logging.getLogger(__name__)

_COUNTERS = {
    "frames": "Frames decoded.",
    "segments": "Segments cut (1 s each).",
    "reconnects": "Reconnection attempts.",
    "drops": "Segments dropped (overload, stride, ring full, shutdown).",
    "unparsed": "Model answers that could not be parsed (scored as normal).",
    "unanswered": "Segments the model gave no valid answer for (errors, timeouts, empty answers); never scored.",
    "scored": "Segments with a final causal score.",
    "source_restarts": "Source threads restarted after a crash.",
    "disarmed_skipped": "Segments not sent to the model because the camera was not armed.",
}


class _CameraCollector(Collector):
    def __init__(self, counters: Mapping[str, CameraCounters], lag: Callable[[str], float],
                 health: ModelHealth | None, storage: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.counters = counters
        self.lag = lag
        self.health = health
        self.storage = storage

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for key, doc in _COUNTERS.items():
            fam = CounterMetricFamily(f"corevad_camera_{key}", doc, labels=["camera"])
            for cam, c in self.counters.items():
                fam.add_metric([cam], float(getattr(c, key)))
            yield fam
        gauges: dict[str, tuple[str, Callable[[str, CameraCounters], float]]] = {
            "fps_in": ("Frames per second read.", lambda cam, c: c.fps_in),
            "segments_per_second": ("Segments per second scored.", lambda cam, c: c.segments_per_s),
            "queue_lag_seconds": ("Age of the oldest segment not yet scored (waiting or in the model).",
                                  lambda cam, c: self.lag(cam)),
            "model_up": ("0 while this camera's model state is down.", lambda cam, c: float(c.model_state != "down")),
            "last_score": ("Last final anomaly score.", lambda cam, c: c.last_score or 0.0),
            "anomalous": ("1 while an alert is open.", lambda cam, c: float(c.state == "anomalous")),
            "online": ("1 while the camera delivers frames.", lambda cam, c: float(c.status == CameraStatus.ONLINE)),
        }
        for key, (doc, fn) in gauges.items():
            g = GaugeMetricFamily(f"corevad_camera_{key}", doc, labels=["camera"])
            for cam, c in self.counters.items():
                g.add_metric([cam], float(fn(cam, c)))
            yield g
        yield from self._model()
        yield from self._storage()

    def _storage(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """The event store's and the MQTT outbox's disk health (App.storage_health)."""
        if self.storage is None:
            return
        health = self.storage()
        for key, name, what in (("store", "corevad_store", "event store"), ("outbox", "corevad_mqtt_outbox",
                                                                              "MQTT outbox")):
            h = health.get(key)
            if not h:
                continue
            up = GaugeMetricFamily(f"{name}_up", f"0 while the {what}'s disk refuses writes, 1 otherwise.")
            up.add_metric([], float(h.get("state") == "ok"))
            yield up
            since = GaugeMetricFamily(f"{name}_failing_since_timestamp_seconds",
                                      f"Unix time the {what} began failing (0: it works).")
            since.add_metric([], float(h.get("failing_since") or 0.0))
            yield since
        store, outbox = health.get("store"), health.get("outbox")
        if store:
            g = GaugeMetricFamily("corevad_store_pending_writes", "Messages not stored yet (queued, or waiting "
                                  "for the disk: retried with backoff).")
            g.add_metric([], float(store["pending"]))
            yield g
        if outbox:
            g = GaugeMetricFamily("corevad_mqtt_events_unsaved", "Undelivered alert events held in memory only "
                                  "because the outbox's disk refused them (lost if the monitor stops).")
            g.add_metric([], float(outbox["unsaved"]))
            yield g

    def _model(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        h = self.health
        if h is None:
            return
        up = GaugeMetricFamily("corevad_model_up", "0 while the model is down (no valid answer for "
                               "runtime.model_down_after_s), 1 otherwise.")
        up.add_metric([], float(h.state is not ModelState.DOWN))
        yield up
        state = GaugeMetricFamily("corevad_model_state", "1 for the model's current state.", labels=["state"])
        for st in ModelState:
            state.add_metric([st.value], float(h.state is st))
        yield state
        errors = CounterMetricFamily("corevad_model_errors", "Failed model batches by kind.", labels=["kind"])
        for kind, n in sorted(h.errors.items()):
            errors.add_metric([kind], float(n))
        yield errors
        last = GaugeMetricFamily("corevad_model_last_success_timestamp_seconds",
                                 "Unix time of the last valid model answer (0: none yet).")
        last.add_metric([], h.last_success or 0.0)
        yield last


class Metrics:
    """A private registry (several apps may live in one process) with the per-camera collector."""

    def __init__(self, counters: Mapping[str, CameraCounters], lag: Callable[[str], float],
                 health: ModelHealth | None = None, *, storage: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_CameraCollector(counters, lag, health, storage))
        self.latency = Histogram("corevad_segment_latency_seconds",
                                 "Segment end to final score (wall clock), model time included.",
                                 ["camera"], registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32))
        self.model_time = Histogram("corevad_model_batch_seconds", "Model time per batch.",
                                    registry=self.registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8))

    def render(self) -> bytes:
        return generate_latest(self.registry)
