"""Wiring: sources -> ring buffers -> segments -> batcher -> model worker -> per-camera scoring -> sinks.

One App wires everything: its long-lived tasks run in one TaskGroup (named corevad[<camera>].<stage>),
and an AsyncExitStack tears down in the reverse order of setup. Stages never import each other; this
module joins them with bounded queues; what belongs to one camera lives in its CameraPipeline.
Each run has a run id that goes into alert ids; alerts a killed run left open end at the next start.
Programmatic use (replay, tests):

    async with App(config, backend=my_backend, encoder=my_encoder, sinks=[MemorySink()]) as app:
        await app.wait_finished()        # every finite source ended and every segment was scored
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import cv2
import numpy as np

from corevad.models.base import ImageTextEncoder, VLMBackend
from corevad.models.text import TextEncoder
from corevad.threads import DaemonPool

from .alert_state import OpenAlerts
from .batcher import Batcher
from .camera import CameraPipeline
from .config import CameraConfig, OverloadPolicy, StreamConfig
from .entities import CameraCounters, CameraStatus, SegmentJob, StatusChange
from .health import HealthChange, ModelHealth, ModelState
from .http import HttpServer, LiveFeed
from .messages import Message
from .metrics import Metrics
from .publisher import Publisher
from .redact import redact
from .ring import FrameRing
from .scoring import CameraScoring, ScoringOutput
from .segmenter import Segmenter
from .sinks.base import Sink
from .sinks.jsonl import JsonlSink
from .sinks.store import EventStoreSink
from .sources import FRAMELESS_SCHEME, FramelessSource, Source, StatusCallback, VideoSource
from .worker import ModelWorker, PreparedBatch, SegmentResult

log = logging.getLogger(__name__)

SourceFactory = Callable[[CameraConfig, Segmenter, CameraCounters, StatusCallback], Source]
RESTART_REASON = "monitor restarted"
STOP_REASON = "monitor stopped"


def new_run_id() -> str:
    """A short id unique to this run of the monitor (UTC start time + random), part of every alert id."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


class _RateWindow:
    """Events per second over a sliding window (10 s): steady under batching, unlike a 1 s difference."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._points: collections.deque[tuple[float, int]] = collections.deque()

    def rate(self, now: float, total: int) -> float:
        self._points.append((now, total))
        while len(self._points) > 2 and now - self._points[1][0] >= self.window_s:
            self._points.popleft()
        t0, n0 = self._points[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0


class App:
    """The streaming monitor as an async context manager.

    backend/encoder: give models directly (replay, tests) or leave None to build them from
    config.model. sinks: extra sinks (entered and closed by the app) on top of the config's
    (jsonl, mqtt) unless config_sinks=False. source_factory: build custom sources per camera.
    """

    def __init__(self, config: StreamConfig, *, backend: VLMBackend | None = None,
                 encoder: ImageTextEncoder | None = None, sinks: Sequence[Sink] = (),
                 config_sinks: bool = True, source_factory: SourceFactory | None = None,
                 prefix: str | None = None, run_id: str | None = None,
                 text_encoder: TextEncoder | None = None) -> None:
        self.config = config
        self.backend = backend
        self.encoder = encoder
        self.text_encoder = text_encoder
        self._extra_sinks = list(sinks)
        self._config_sinks = config_sinks
        self._source_factory = source_factory
        self.prefix = prefix or (config.mqtt.prefix if config.mqtt is not None else "corevad")
        self.run_id = run_id or new_run_id()
        self.cameras: dict[str, CameraPipeline] = {}
        self.counters: dict[str, CameraCounters] = {}
        self.sinks: list[Sink] = []
        self.metrics_server: HttpServer | None = None
        self.live_feed = LiveFeed()  # server-sent events of /api/stream
        self.model_health = ModelHealth(down_after_s=config.runtime.model_down_after_s)
        # One sqlite file holds the open-alert record and, when the store is on, the history.
        self.store_path = config.store.db_path(config.runtime.state_path(), self.prefix)
        self.open_alerts = OpenAlerts(self.store_path)
        self._stack: AsyncExitStack | None = None
        self._closing = threading.Event()
        self._started = 0.0
        self._stopped = False
        self._inflight_since: float | None = None  # monotonic start of the batch in the model, if any
        self._store_sink: EventStoreSink | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> App:
        self._stack = AsyncExitStack()
        await self._stack.__aenter__()
        try:
            await self._setup(self._stack)
        except BaseException as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._stack is not None
        await self._stack.__aexit__(*exc)

    async def _setup(self, stack: AsyncExitStack) -> None:
        cfg = self.config
        rt = cfg.runtime
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        left_open = self.open_alerts.load()  # read before anything is published: a bad file fails early
        stack.callback(self.open_alerts.close)
        if self.backend is None:
            from .models import build_models

            backend, self.encoder = await asyncio.to_thread(build_models, cfg.model, with_clip=False)
            self.backend = backend
            stack.callback(backend.close)
            if cfg.uses_features():
                self.encoder = await self._load_clip()
        if self.text_encoder is None and cfg.uses_text_context():
            from .models import build_text_encoder

            self.text_encoder = await asyncio.to_thread(build_text_encoder, cfg.model, clip=self.encoder)
        # Sinks first: they outlive every stage, so teardown flushes stages into them before closing.
        for sink in self._make_sinks():
            self.sinks.append(await stack.enter_async_context(sink))  # type: ignore[arg-type]
        self.publisher = Publisher(self.sinks, bound=rt.sink_queue)
        self.batcher = Batcher(max_batch=rt.max_batch, max_wait_s=rt.max_wait_s,
                               max_pending_per_camera=rt.max_pending_per_camera,
                               max_pending_total=rt.max_pending_total, on_drop=self._on_drop,
                               default_policy=rt.overload_policy)
        self.metrics = Metrics(self.counters, self._lag, self.model_health, storage=self.storage_health)
        self._store_sink = next((s for s in self.sinks if isinstance(s, EventStoreSink)), None)
        if cfg.metrics.enabled:
            pw = cfg.metrics.password()
            store = self._store_sink
            self.metrics_server = await stack.enter_async_context(HttpServer(
                host=cfg.metrics.host, port=cfg.metrics.port, render_metrics=self.metrics.render,
                cameras=self.camera_overview, model=self._model_and_storage,
                store_path=store.path if store is not None else None,
                feed=self.live_feed, username=cfg.metrics.username,
                password=pw.get_secret_value() if pw is not None else None))
        # Daemon threads: a model call that hangs must not keep the process alive after shutdown.
        executor = DaemonPool(1, name="corevad[worker].model")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        self._executor = executor
        self._prep_executor = DaemonPool(1, name="corevad[worker].prepare")
        stack.callback(self._prep_executor.shutdown, wait=False, cancel_futures=True)
        assert self.backend is not None
        self.worker = ModelWorker(self.backend, self.encoder, keep_snapshot=cfg.alerts.snapshot,
                                  text_encoder=self.text_encoder)
        warm = await asyncio.to_thread(self.worker.warm_up, rt.max_batch, rt.frames_per_segment, rt.frame_size)
        if warm is not None:
            log.info("model warmed up: a batch of %d in %.2f s", rt.max_batch, warm)
        self._support = None
        if self.text_encoder is not None:
            self._support = await asyncio.to_thread(explanation_support, self.text_encoder)
        for cam_cfg in cfg.enabled_cameras():
            if cam_cfg.url.startswith("sample://"):
                cam_cfg = await asyncio.to_thread(_resolve_sample, cam_cfg)  # generated on first use
            self._add_camera(cam_cfg)
        self._tg = await stack.enter_async_context(asyncio.TaskGroup())
        stack.push_async_callback(self._shutdown)  # runs before the TaskGroup waits for its tasks
        self._lane_tasks = self.publisher.start(self._tg)
        self._worker_task = self._tg.create_task(self._worker_loop(), name="corevad[worker].model")
        for cam in self.cameras.values():
            cam.task = self._tg.create_task(cam.run(functools.partial(self._publish_scoring, cam)),
                                            name=f"corevad[{cam.name}].score")
        self._stats_task = self._tg.create_task(self._stats_loop(), name="corevad[stats].tick")
        self.publisher.publish(Message("available", "online", retain=True))
        self._end_left_open(left_open)
        self.publisher.publish(Message("model", self.model_health.snapshot(), retain=True))
        for cam in self.cameras.values():
            self.publisher.publish(Message("state", cam.scoring.state, camera=cam.name, retain=True))
            self.publisher.publish(Message("model", cam.health.snapshot(), camera=cam.name, retain=True))
            assert cam.source is not None
            cam.source.start()

    async def _load_clip(self) -> ImageTextEncoder | None:
        """CLIP for feature scoring. With use_features: auto a CLIP that does not load is a warning (scoring
        falls back to labels or the text context); with true it is an error."""
        from corevad.errors import CorevadError

        from .models import build_clip

        cfg = self.config
        try:
            return await asyncio.to_thread(build_clip, cfg.model)
        except CorevadError as exc:
            if any(cfg.camera_section(c, "refinement").use_features is True for c in cfg.enabled_cameras()):
                raise
            log.warning("CLIP did not load (%s): scoring without CLIP features (use_features: auto)", exc)
            return None

    def _end_left_open(self, left_open: dict[str, dict[str, Any]]) -> None:
        """End the alerts a previous run left open (it crashed or was killed) with reason "monitor restarted"."""
        now = time.time()
        for camera, alert in left_open.items():
            after = {**alert, "active": False, "end_time": alert.get("end_time") or now,
                     "end_reason": RESTART_REASON}
            log.warning("camera %s: ending alert %s left open by the previous run (%s)", camera,
                        alert.get("id"), RESTART_REASON)
            self.publisher.publish(Message("events", {"type": "end", "before": alert, "after": after}))
        self.open_alerts.clear()

    def _make_sinks(self) -> list[Sink]:
        sinks: list[Sink] = []
        cfg = self.config
        if self._config_sinks and cfg.jsonl is not None:
            sinks.append(JsonlSink(cfg.jsonl.path, kinds=set(cfg.jsonl.kinds) if cfg.jsonl.kinds else None,
                                   prefix=self.prefix))
        if self._config_sinks and cfg.store.enabled:
            from .store import Retention

            st = cfg.store
            retention = Retention(days=st.retention_days, max_bytes=int(st.max_mb * 1024 * 1024))
            sinks.append(EventStoreSink(self.store_path, retention=retention, queue_size=st.queue))
        if self._config_sinks and cfg.mqtt is not None:
            from .sinks.mqtt import MqttSink

            sinks.append(MqttSink(cfg.mqtt, outbox_path=cfg.mqtt.outbox_path(cfg.runtime.state_path()),
                                  cameras=[c.name for c in cfg.enabled_cameras()]))
        if cfg.metrics.enabled:
            sinks.append(self.live_feed)
        return sinks + self._extra_sinks

    def _add_camera(self, cam_cfg: CameraConfig) -> None:
        cfg, rt = self.config, self.config.runtime
        counters = CameraCounters()
        frameless = cam_cfg.url.startswith(FRAMELESS_SCHEME)
        ring = None
        if not frameless:
            # Slots: waiting (per-camera bound) + in the worker (same bound at most) + the one being filled,
            # +1 for the moment between a drop and the source's next acquire.
            ring = FrameRing(2 * rt.max_pending_per_camera + 2, rt.frames_per_segment, size=rt.frame_size)
        refinement = cfg.camera_section(cam_cfg, "refinement")
        alerts = cfg.camera_section(cam_cfg, "alerts")
        # auto: CLIP wherever it was loaded (a GPU machine, see StreamConfig.uses_features) and frames exist;
        # the text context (when on) scores the rest.
        use_features = bool(refinement.use_features) and self.encoder is not None and not frameless
        text_context = refinement.text_context and self.text_encoder is not None and not use_features
        scoring = CameraScoring(cam_cfg.name, params=refinement.params(), alerts=alerts.params(),
                                use_features=use_features, lrc=refinement.lrc, counters=counters,
                                top_k=alerts.explanation_top_k, run_id=self.run_id, text_context=text_context,
                                support=self._support if alerts.rank_explanations else None,
                                use_probability=refinement.segment_score == "p_anomalous")
        cam = CameraPipeline(cam_cfg, counters=counters, scoring=scoring, ring=ring,
                             results_bound=2 * rt.max_batch, down_after_s=rt.model_down_after_s)
        self.cameras[cam.name] = cam
        self.counters[cam.name] = counters
        policy = cfg.policy_for(cam_cfg)
        self.batcher.add_camera(cam.name, policy)
        segmenter = Segmenter(cam.name, ring=ring, frames_per_segment=rt.frames_per_segment,
                              emit=self._emitter(cam, policy), on_no_slot=self._no_slot(cam),
                              segment_seconds=rt.segment_seconds, keep_full_frame=alerts.snapshot and not frameless)

        def on_status(change: StatusChange) -> None:
            self._loop.call_soon_threadsafe(self._on_status, cam, change)

        if self._source_factory is not None:
            cam.source = self._source_factory(cam_cfg, segmenter, counters, on_status)
        elif frameless:
            cam.source = FramelessSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=on_status,
                                         restart=rt.reconnect.policy())
        else:
            cam.source = VideoSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=on_status,
                                     reconnect=rt.reconnect)

        def on_exit() -> None:  # the source thread is done: its end marker queues behind its segments
            self._loop.call_soon_threadsafe(self.batcher.end_of_stream, cam.name)

        cam.source.on_exit = on_exit

    # -- source side (called from source threads) ------------------------------------------------------
    def _emitter(self, cam: CameraPipeline, policy: OverloadPolicy) -> Callable[[SegmentJob], None]:
        loop = self._loop

        def offer(job: SegmentJob) -> None:
            cam.cut(job)
            self.batcher.offer(job)

        async def put(job: SegmentJob) -> None:
            cam.cut(job)
            await self.batcher.put(job)

        def emit(job: SegmentJob) -> None:
            if self._closing.is_set():
                job.release()
                loop.call_soon_threadsafe(cam.lost, None)
                return
            if policy is not OverloadPolicy.BLOCK:
                loop.call_soon_threadsafe(offer, job)
                return
            fut = asyncio.run_coroutine_threadsafe(put(job), loop)
            while True:  # lossless: wait for room, but give up when the app shuts down
                try:
                    fut.result(0.25)
                    return
                except concurrent.futures.TimeoutError:
                    if self._closing.is_set():
                        fut.cancel()
                        return

        return emit

    def _no_slot(self, cam: CameraPipeline) -> Callable[[int], None]:
        def lost(index: int) -> None:
            self._loop.call_soon_threadsafe(cam.lost, None)

        return lost

    # -- loop side -------------------------------------------------------------------------------------
    def _on_drop(self, job: SegmentJob, reason: str) -> None:
        cam = self.cameras.get(job.camera)
        if cam is None:
            return
        cam.lost(job.index)
        log.debug("camera %s: dropped segment %d (%s)", cam.name, job.index, reason)

    def _lag(self, camera: str) -> float:
        cam = self.cameras.get(camera)
        return cam.lag() if cam is not None else 0.0

    def _on_status(self, cam: CameraPipeline, change: StatusChange) -> None:
        bad = change.status is CameraStatus.OFFLINE and change.reason != STOP_REASON  # a clean stop is no warning
        level = logging.WARNING if bad else logging.INFO
        log.log(level, "camera %s: %s%s", cam.name, change.status.value,
                f" ({change.reason})" if change.reason else "")
        self.publisher.publish(Message("status", {
            "status": "online" if change.status is CameraStatus.ONLINE else "offline",
            "state": change.status.value, "reason": redact(change.reason), "url": cam.cfg.safe_url,
            "reconnects": cam.counters.reconnects, "time": change.at,
        }, camera=cam.name, retain=True))

    def _publish_model(self, change: HealthChange | None) -> None:
        if change is None:
            return
        level = logging.WARNING if change.state is not ModelState.OK else logging.INFO
        log.log(level, "model %s%s", change.state.value, f" ({change.reason})" if change.reason else "")
        self.publisher.publish(Message("model", self.model_health.snapshot(), retain=True))

    async def _prepare_loop(self, ready: asyncio.Queue[tuple[list[SegmentJob], PreparedBatch | None] | None]
                            ) -> None:
        """Stage 1: form the next batch and preprocess it on its own thread while the model runs the last one."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.batcher.next_batch()
            if not batch:
                await ready.put(None)
                return
            jobs = [j for j in batch if not j.end_of_stream]
            prepared: PreparedBatch | None = None
            if jobs and self.config.runtime.overlap_preprocessing:  # else the model stage does both (infer)
                prepared = await loop.run_in_executor(self._prep_executor, self.worker.prepare, jobs)
            await ready.put((batch, prepared))

    async def _worker_loop(self) -> None:
        """Stage 2: the model. Stages are joined by a one-batch queue, so at most one batch waits prepared."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[tuple[list[SegmentJob], PreparedBatch | None] | None] = asyncio.Queue(maxsize=1)
        prep = asyncio.create_task(self._prepare_loop(ready), name="corevad[worker].prepare")
        try:
            await self._model_loop(loop, ready)
        finally:
            prep.cancel()

    async def _model_loop(self, loop: asyncio.AbstractEventLoop,
                          ready: asyncio.Queue[tuple[list[SegmentJob], PreparedBatch | None] | None]) -> None:
        while True:
            item = await ready.get()
            if item is None:
                return
            batch, prepared = item
            jobs = [j for j in batch if not j.end_of_stream]
            results: list[SegmentResult] = []
            if jobs:
                step = (functools.partial(self.worker.finish, prepared) if prepared is not None
                        else functools.partial(self.worker.infer, jobs))
                self._inflight_since = time.monotonic()
                try:
                    results = await loop.run_in_executor(self._executor, step)
                except Exception:  # noqa: BLE001 - never lose the worker; the segments count as dropped
                    log.exception("model worker failed on a batch of %d", len(jobs))
                    for lost in jobs:
                        lost.release()
                        self._on_drop(lost, "worker error")
                finally:
                    self._inflight_since = None
                if results:
                    self.metrics.model_time.observe(results[0].model_s)
                    answered = [r for r in results if r.answered]
                    if answered:
                        self._publish_model(self.model_health.success())
                    else:
                        r0 = results[0]
                        self._publish_model(self.model_health.failure(r0.error_kind or "error", r0.error or ""))
            pending = iter(results)
            for job in batch:  # markers keep their place behind their camera's segments
                if job.end_of_stream:
                    await self.cameras[job.camera].results.put(job)
                else:
                    r = next(pending, None)
                    if r is not None:
                        await self.cameras[r.job.camera].results.put(r)

    async def _publish_scoring(self, cam: CameraPipeline, out: ScoringOutput) -> None:
        for m in out.messages:
            if m.kind == "score" and isinstance(m.payload, dict) and m.payload.get("available", True):
                self.metrics.latency.labels(cam.name).observe(max(0.0, float(m.payload["latency_s"])))
            elif m.kind == "events" and isinstance(m.payload, dict):
                after = m.payload["after"]
                self.open_alerts.set(cam.name, after if after.get("active") else None)
        self.publisher.publish_all(out.messages)
        if out.snapshot is not None:
            quality = self.config.camera_section(cam.cfg, "alerts").snapshot_quality
            jpeg = await asyncio.to_thread(_jpeg, out.snapshot, quality)
            if jpeg is not None:
                self.publisher.publish(Message("snapshot", jpeg, camera=cam.name, retain=True,
                                               alert_id=out.snapshot_alert))

    async def _stats_loop(self) -> None:
        interval = self.config.runtime.stats_interval_s
        last_pub = time.monotonic()
        windows = {name: (_RateWindow(), _RateWindow()) for name in self.counters}
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for name, c in self.counters.items():
                fw, sw = windows[name]
                c.fps_in, c.segments_per_s = fw.rate(now, c.frames), sw.rate(now, c.scored)
                c.queue_lag_s = self._lag(name)
            await self._watchdog(now)
            if now - last_pub >= interval:
                last_pub = now
                self.publisher.publish(Message("stats", self.stats()))

    async def _watchdog(self, now: float) -> None:
        """A hung model produces no outcome at all: mark it down, and end alerts that waited too long."""
        if self._inflight_since is not None:
            stuck = now - self._inflight_since
            self._publish_model(self.model_health.stalled(stuck))
            for cam in self.cameras.values():
                if cam.busy():
                    msgs = cam.model_message(cam.health.stalled(stuck))
                    self.publisher.publish_all(msgs)
        for cam in self.cameras.values():
            if cam.scoring.tracker.active is not None and not cam.finished.is_set():
                await self._publish_scoring(cam, cam.scoring.unscored_until(cam.latest_clock))

    # -- public ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-camera counters and runtime totals (what <prefix>/stats carries)."""
        store = self._store_sink
        replicas = getattr(self.backend, "endpoint_stats", None)  # the openai backend's replicas
        endpoints = {"endpoints": [{**e, "url": redact(e["url"])} for e in replicas()]} if replicas else {}
        return {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "run_id": self.run_id,
            "cameras": {name: c.snapshot() for name, c in self.counters.items()},
            "model": {"backend": getattr(self.backend, "name", "?"), "batches": self.worker.batches,
                      "errors": self.worker.errors, "pending": self.batcher.pending(),
                      **self.model_health.snapshot(),
                      **endpoints},
            "sinks": {"dropped": self.publisher.dropped, "errors": self.publisher.errors},
            "store": None if store is None else store.health(),
            "mqtt": None if (mqtt := self._mqtt_sink()) is None else dataclasses.asdict(mqtt.stats()),
        }

    def storage_health(self) -> dict[str, Any]:
        """The event store's and the MQTT outbox's health (state ok/failing, since, pending): None when off."""
        store, mqtt = self._store_sink, self._mqtt_sink()
        return {"store": None if store is None else store.health(),
                "outbox": None if mqtt is None else mqtt.stats().outbox}

    def _model_and_storage(self) -> dict[str, Any]:
        """/api/model: the model's state, with the storage health beside it (the page shows both)."""
        return {**self.model_health.snapshot(), **self.storage_health()}

    def _mqtt_sink(self) -> Any:
        from .sinks.mqtt import MqttSink

        return next((s for s in self.sinks if isinstance(s, MqttSink)), None)

    def camera_overview(self) -> list[dict[str, Any]]:
        """What /api/cameras shows: per camera its (redacted) URL, status, model state, state, last score and
        alert thresholds."""
        out = []
        for name, cam in self.cameras.items():
            c = cam.counters
            alerts = self.config.camera_section(cam.cfg, "alerts")
            out.append({"name": name, "url": cam.cfg.safe_url, "status": c.status.value, "reason": c.reason,
                        "model_state": c.model_state, "state": c.state, "last_score": c.last_score,
                        "last_explanation": c.last_explanation, "scored": c.scored, "drops": c.drops,
                        "open_threshold": alerts.open_threshold, "close_threshold": alerts.close_threshold})
        return out

    def failed_cameras(self) -> list[str]:
        """Cameras whose source is offline (gave up or never connected): a finished run with these failed."""
        return [n for n, c in self.counters.items() if c.status is CameraStatus.OFFLINE and c.reason != STOP_REASON]

    async def wait_finished(self, timeout: float | None = None) -> None:
        """Wait until every camera's source ended and all its segments were scored and published."""
        waits = [cam.finished.wait() for cam in self.cameras.values()]
        await asyncio.wait_for(asyncio.gather(*waits), timeout)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set or every camera has finished, whichever comes first."""
        done = asyncio.ensure_future(self.wait_finished())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({done, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (done, stopper):
                f.cancel()

    async def _shutdown(self) -> None:
        """Stop sources, flush in-flight segments through the model and scoring, publish offline.

        Bounded by one deadline, shutdown_timeout_s from now, whatever a camera or the model does: what is
        left at the deadline is dropped (counted) and open alerts end. Then the sinks flush (their own bounds).
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self.config.runtime.shutdown_timeout_s
        self._closing.set()
        for cam in self.cameras.values():
            cam.stop_reason = STOP_REASON
            if cam.source is not None:
                cam.source.stop()
        await asyncio.gather(*(asyncio.to_thread(cam.source.join, _left(deadline))
                               for cam in self.cameras.values() if cam.source is not None))
        await asyncio.sleep(0)  # let the sources' last callbacks (end markers) run
        for cam in self.cameras.values():  # a source thread that did not stop in time has no marker yet
            if cam.source is not None and getattr(cam.source, "alive", False):
                self.batcher.end_of_stream(cam.name)
        await self.batcher.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._worker_task), _left(deadline))
        except TimeoutError:
            log.warning("shutdown: model still busy at the %.0f s deadline; dropping what is left",
                        self.config.runtime.shutdown_timeout_s)
            self._worker_task.cancel()
            for job in self.batcher.drain():
                if not job.end_of_stream:
                    self._on_drop(job, "shutdown")
        try:
            await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in self.cameras.values())),
                                   _left(deadline))
        except TimeoutError:
            log.warning("shutdown: scoring did not finish in time; ending open alerts now")
        for cam in self.cameras.values():
            if cam.task is not None and not cam.task.done():
                cam.task.cancel()
            if not cam.finished.is_set():
                await cam.finish(functools.partial(self._publish_scoring, cam), reason=STOP_REASON)
        self._stats_task.cancel()
        for cam in self.cameras.values():
            if cam.counters.status in (CameraStatus.ONLINE, CameraStatus.CONNECTING):
                cam.counters.status, cam.counters.reason = CameraStatus.OFFLINE, STOP_REASON  # the last stats say so
                self._on_status(cam, StatusChange(cam.name, CameraStatus.OFFLINE, STOP_REASON))
        self.publisher.publish(Message("stats", self.stats()))
        self.publisher.publish(Message("available", "offline", retain=True))
        self.publisher.close()


def explanation_support(text_encoder: TextEncoder) -> Callable[[np.ndarray], float]:
    """description embedding -> support in (0, 1) against corevad.explain's reference phrases (blocking)."""
    from corevad.explain import ANOMALY_PHRASES, NORMAL_PHRASES, support

    anomaly = text_encoder.encode_texts(list(ANOMALY_PHRASES))
    normal = text_encoder.encode_texts(list(NORMAL_PHRASES))
    return lambda emb: float(support(emb, anomaly, normal)[0])


def _left(deadline: float) -> float:
    """Seconds until the deadline, at least a moment so that work already done can be collected."""
    return max(0.2, deadline - time.monotonic())


def _resolve_sample(cam: CameraConfig) -> CameraConfig:
    if not cam.url.startswith("sample://"):
        return cam
    from .sample import ensure_sample_clip

    return cam.model_copy(update={"url": str(ensure_sample_clip(cam.url[len("sample://"):] or "demo"))})


def _jpeg(frame_bgr: np.ndarray, quality: int) -> bytes | None:
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


def build_app(config: StreamConfig, *, backend: VLMBackend | None = None, encoder: ImageTextEncoder | None = None,
              sinks: Sequence[Sink] = (), config_sinks: bool = True,
              source_factory: SourceFactory | None = None) -> App:
    """The programmatic entry: an App to use as `async with build_app(...) as app:`."""
    return App(config, backend=backend, encoder=encoder, sinks=sinks, config_sinks=config_sinks,
               source_factory=source_factory)


async def run(config: StreamConfig, *, backend: VLMBackend | None = None, encoder: ImageTextEncoder | None = None,
              sinks: Sequence[Sink] = (), config_sinks: bool = True,
              stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Run until every (finite) camera finished or `stop` is set; return the final stats."""
    async with build_app(config, backend=backend, encoder=encoder, sinks=sinks, config_sinks=config_sinks) as app:
        await app.run_until(stop or asyncio.Event())
        result = app.stats()
    return result
