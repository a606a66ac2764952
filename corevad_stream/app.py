"""Wiring: sources -> ring buffers -> segments -> batcher -> model stage -> per-camera scoring -> dispatch -> sinks.

App only builds the stages and joins them: each stage owns its state (batcher.Batcher, model_stage.ModelStage,
camera.CameraPipeline, dispatch.Dispatch, supervisor.Supervisor, publisher.Publisher). Long-lived tasks run
in one TaskGroup (named corevad[<camera>].<stage>); an AsyncExitStack tears down in the reverse order of
setup: sources stop, the model drains, cameras finish, the last stats go out, then `offline`, then sinks.
Cameras can be added and removed while the app runs (add_camera, remove_camera).
Each run has a run id that goes into alert ids; alerts a killed run left open end at the next start.
Programmatic use (replay, tests):

    async with App(config, backend=my_backend, encoder=my_encoder, sinks=[MemorySink()]) as app:
        await app.wait_finished()        # every finite source ended and every segment was scored
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import numpy as np

from corevad.models.base import ImageTextEncoder, VLMBackend
from corevad.models.text import TextEncoder

from .alert_state import OpenAlerts
from .batcher import Batcher
from .camera import CameraPipeline
from .config import CameraConfig, StreamConfig
from .dispatch import Dispatch
from .entities import (
    REMOVED_REASON,
    RESTART_REASON,
    STOP_REASON,
    CameraCounters,
    CameraStatus,
    OverloadPolicy,
    ScoringOutput,
    SegmentJob,
    SegmentResult,
    Source,
    StatusCallback,
    StatusChange,
)
from .health import ModelHealth
from .http import HttpServer, LiveFeed
from .messages import AlertEventRecord, Message, StatusRecord
from .metrics import Metrics
from .model_stage import ModelStage
from .publisher import Publisher
from .redact import redact
from .ring import FrameRing
from .scoring import CameraScoring
from .segmenter import Segmenter
from .sinks.base import Sink
from .sinks.jsonl import JsonlSink
from .sinks.store import EventStoreSink
from .sources import FRAMELESS_SCHEME, FramelessSource, VideoSource
from .supervisor import Supervisor
from .worker import ModelWorker

log = logging.getLogger(__name__)

SourceFactory = Callable[[CameraConfig, Segmenter, CameraCounters, StatusCallback], Source]
__all__ = ["RESTART_REASON", "STOP_REASON", "App", "build_app", "run"]


def new_run_id() -> str:
    """A short id unique to this run of the monitor (UTC start time + random), part of every alert id."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


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
        self.counters: dict[str, CameraCounters] = {}  # the same cameras' counters (metrics, the live view)
        self.sinks: list[Sink] = []
        self.metrics_server: HttpServer | None = None
        self.live_feed = LiveFeed()  # server-sent events of /api/stream
        self.model_health = ModelHealth(down_after_s=config.runtime.model_down_after_s)
        # One sqlite file holds the open-alert record and, when the store is on, the history.
        self.store_path = config.store.db_path(config.runtime.state_path(), self.prefix)
        self.open_alerts = OpenAlerts(self.store_path)
        self._stack: AsyncExitStack | None = None
        self._deadline: float | None = None  # set when teardown starts: one bound for all of it
        self._store_sink: EventStoreSink | None = None
        self._support: Callable[[np.ndarray], float] | None = None

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
        """Build the stages in order; every teardown step is pushed right after what it undoes."""
        cfg, rt = self.config, self.config.runtime
        self._loop = asyncio.get_running_loop()
        left_open = self.open_alerts.load()  # read before anything is published: a bad file fails early
        stack.callback(self.open_alerts.close)
        await self._load_models(stack)
        # Sinks first: they outlive every stage, so teardown flushes stages into them before closing.
        for sink in self._make_sinks():
            self.sinks.append(await stack.enter_async_context(sink))  # type: ignore[arg-type]
        self._store_sink = next((s for s in self.sinks if isinstance(s, EventStoreSink)), None)
        self.publisher = Publisher(self.sinks, bound=rt.sink_queue)
        self.batcher = Batcher(max_batch=rt.max_batch, max_wait_s=rt.max_wait_s,
                               max_pending_per_camera=rt.max_pending_per_camera,
                               max_pending_total=rt.max_pending_total, on_drop=self._on_drop,
                               default_policy=OverloadPolicy(rt.overload_policy), on_submit=self._on_submit)
        self.metrics = Metrics(self.counters, self._lag, self.model_health)
        await self._start_http(stack)
        assert self.backend is not None
        self.worker = ModelWorker(self.backend, self.encoder, keep_snapshot=cfg.alerts.snapshot,
                                  text_encoder=self.text_encoder)
        warm = await asyncio.to_thread(self.worker.warm_up, rt.max_batch, rt.frames_per_segment, rt.frame_size)
        if warm is not None:
            log.info("model warmed up: a batch of %d in %.2f s", rt.max_batch, warm)
        if self.text_encoder is not None:
            self._support = await asyncio.to_thread(explanation_support, self.text_encoder)
        self.dispatch = Dispatch(publish=self.publisher.publish, open_alerts=self.open_alerts,
                                 observe_latency=lambda cam, s: self.metrics.latency.labels(cam).observe(s))
        stack.callback(self.dispatch.close)
        self.model_stage = ModelStage(runner=self.worker, batches=self.batcher, health=self.model_health,
                                      overlap=rt.overlap_preprocessing, deliver=self._deliver, on_drop=self._on_drop,
                                      publish=self.publisher.publish, observe_model_s=self.metrics.model_time.observe)
        stack.callback(self.model_stage.close)
        self.supervisor = Supervisor(
            cameras=self.cameras, model=self.model_stage, dispatch=self._dispatch_camera,  # type: ignore[arg-type]
            publish=self.publisher.publish, stats_interval_s=rt.stats_interval_s, run_id=self.run_id,
            sink_stats=lambda: {"dropped": self.publisher.dropped, "errors": self.publisher.errors},
            store_stats=self._store_stats)
        self._tg = await stack.enter_async_context(asyncio.TaskGroup())
        self.publisher.start(self._tg)
        stack.push_async_callback(self._close_publisher)
        supervisor_task = self._tg.create_task(self.supervisor.run(), name="corevad[stats].tick")
        stack.push_async_callback(self._stop_supervisor, supervisor_task)
        stack.push_async_callback(self._finish_cameras)
        self._model_task = self._tg.create_task(self.model_stage.run(), name="corevad[worker].model")
        stack.push_async_callback(self._drain_model)
        self.publisher.publish(Message("available", "online", retain=True))
        self._end_left_open(left_open)
        self.model_stage.announce()
        stack.push_async_callback(self._stop_sources)  # runs first: no new segments from here on
        for cam_cfg in cfg.enabled_cameras():
            await self.add_camera(cam_cfg)

    async def _load_models(self, stack: AsyncExitStack) -> None:
        cfg = self.config
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

    async def _start_http(self, stack: AsyncExitStack) -> None:
        m = self.config.metrics
        if not m.enabled:
            return
        pw = m.password()
        store = self._store_sink
        self.metrics_server = await stack.enter_async_context(HttpServer(
            host=m.host, port=m.port, render_metrics=self.metrics.render, cameras=self.camera_overview,
            model=self.model_health.snapshot, store_path=store.path if store is not None else None,
            feed=self.live_feed, username=m.username, password=pw.get_secret_value() if pw is not None else None))

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
            self.publisher.publish(Message("events", AlertEventRecord(type="end", before=alert, after=after)))
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

            sinks.append(MqttSink(cfg.mqtt, cameras=[c.name for c in cfg.enabled_cameras()]))
        if cfg.metrics.enabled:
            sinks.append(self.live_feed)
        return sinks + self._extra_sinks

    # -- cameras ---------------------------------------------------------------------------------------
    async def add_camera(self, cam_cfg: CameraConfig) -> CameraPipeline:
        """Start a camera while the app runs: its pipeline, its scoring task, its retained state, its source."""
        if cam_cfg.name in self.cameras:
            raise ValueError(f"camera {cam_cfg.name!r} is already running")
        if self._deadline is not None:
            raise RuntimeError("the app is shutting down")
        if cam_cfg.url.startswith("sample://"):
            cam_cfg = await asyncio.to_thread(_resolve_sample, cam_cfg)  # generated on first use
        cam = self._build_camera(cam_cfg)
        self.cameras[cam.name], self.counters[cam.name] = cam, cam.counters
        cam.task = self._tg.create_task(cam.run(functools.partial(self._dispatch_camera, cam)),
                                        name=f"corevad[{cam.name}].score")
        self.publisher.publish(Message("state", cam.scoring.state, camera=cam.name, retain=True))
        self.publisher.publish(Message("model", cam.health.record(), camera=cam.name, retain=True))
        assert cam.source is not None
        cam.source.start()
        return cam

    async def remove_camera(self, name: str) -> None:
        """Stop a camera while the app runs: its source stops, what it cut is still scored (within
        runtime.shutdown_timeout_s), an open alert ends ("camera removed"), its status says so, it is gone."""
        cam = self.cameras.get(name)
        if cam is None:
            raise ValueError(f"no camera named {name!r}")
        deadline = time.monotonic() + self.config.runtime.shutdown_timeout_s
        await self._stop_camera_sources([cam], REMOVED_REASON, deadline)
        await self._finish_camera_scoring([cam], REMOVED_REASON, deadline)
        self._say_stopped(cam, REMOVED_REASON, always=True)
        del self.cameras[name], self.counters[name]
        self.batcher.remove_camera(name)

    def _build_camera(self, cam_cfg: CameraConfig) -> CameraPipeline:
        """One camera's parts; its config sections are resolved here, once."""
        cfg, rt = self.config, self.config.runtime
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
        counters = CameraCounters()
        scoring = CameraScoring(cam_cfg.name, params=refinement.params(), alerts=alerts.params(),
                                use_features=use_features, lrc=refinement.lrc, counters=counters,
                                top_k=alerts.explanation_top_k, run_id=self.run_id, text_context=text_context,
                                support=self._support if alerts.rank_explanations else None,
                                use_probability=refinement.segment_score == "p_anomalous")
        cam = CameraPipeline(cam_cfg, counters=counters, scoring=scoring, ring=ring, alerts=alerts,
                             refinement=refinement, results_bound=2 * rt.max_batch,
                             down_after_s=rt.model_down_after_s)
        policy = OverloadPolicy(cfg.policy_for(cam_cfg))
        self.batcher.add_camera(cam.name, policy)
        loop = self._loop
        segmenter = Segmenter(cam.name, ring=ring, frames_per_segment=rt.frames_per_segment,
                              emit=self.batcher.submit,
                              on_no_slot=lambda index: loop.call_soon_threadsafe(cam.lost_no_slot, index),
                              segment_seconds=rt.segment_seconds, keep_full_frame=alerts.snapshot and not frameless,
                              lossless=policy is OverloadPolicy.BLOCK)

        def on_status(change: StatusChange) -> None:
            loop.call_soon_threadsafe(self._on_status, cam, change)

        if self._source_factory is not None:
            cam.source = self._source_factory(cam_cfg, segmenter, counters, on_status)
        elif frameless:
            cam.source = FramelessSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=on_status,
                                         restart=rt.reconnect.policy())
        else:
            cam.source = VideoSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=on_status,
                                     reconnect=rt.reconnect)
        # The source thread is done: its end marker queues behind its segments.
        cam.source.on_exit = lambda: loop.call_soon_threadsafe(self.batcher.end_of_stream, cam.name)
        return cam

    # -- joints between stages (on the loop) -----------------------------------------------------------
    def _on_submit(self, job: SegmentJob) -> None:
        cam = self.cameras.get(job.camera)
        if cam is not None:
            cam.cut(job)

    def _on_drop(self, job: SegmentJob, reason: str) -> None:
        cam = self.cameras.get(job.camera)
        if cam is None:
            return
        cam.lost(job.index)
        log.debug("camera %s: dropped segment %d (%s)", cam.name, job.index, reason)

    async def _deliver(self, item: SegmentResult | SegmentJob) -> None:
        """A model result or end marker to its camera's scoring queue (a removed camera's are discarded)."""
        cam = self.cameras.get(item.camera if isinstance(item, SegmentJob) else item.job.camera)
        if cam is not None and not cam.finished.is_set():
            await cam.results.put(item)

    async def _dispatch_camera(self, cam: CameraPipeline, out: ScoringOutput) -> None:
        await self.dispatch(cam.name, out, snapshot_quality=cam.alerts.snapshot_quality)

    def _lag(self, camera: str) -> float:
        cam = self.cameras.get(camera)
        return cam.lag() if cam is not None else 0.0

    def _on_status(self, cam: CameraPipeline, change: StatusChange) -> None:
        if self.cameras.get(cam.name) is not cam:
            return  # a late word from a removed camera's source
        # A clean stop or a removal is no warning.
        bad = change.status is CameraStatus.OFFLINE and change.reason not in (STOP_REASON, REMOVED_REASON)
        level = logging.WARNING if bad else logging.INFO
        log.log(level, "camera %s: %s%s", cam.name, change.status.value,
                f" ({change.reason})" if change.reason else "")
        self.publisher.publish(Message("status", StatusRecord(
            online=change.status is CameraStatus.ONLINE, state=change.status.value, reason=redact(change.reason),
            url=cam.cfg.safe_url, reconnects=cam.counters.reconnects, time=change.at), camera=cam.name, retain=True))

    def _store_stats(self) -> dict[str, Any] | None:
        store = self._store_sink
        return None if store is None else {"written": store.written, "dropped": store.dropped, "errors": store.errors}

    # -- public ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-camera counters and runtime totals (what <prefix>/stats carries)."""
        return self.supervisor.stats()

    def camera_overview(self) -> list[dict[str, Any]]:
        """What /api/cameras shows: per camera its (redacted) URL, status, model state, state, last score and
        alert thresholds."""
        out = []
        for name, cam in self.cameras.items():
            c = cam.counters
            out.append({"name": name, "url": cam.cfg.safe_url, "status": c.status.value, "reason": c.reason,
                        "model_state": c.model_state, "state": c.state, "last_score": c.last_score,
                        "last_explanation": c.last_explanation, "scored": c.scored, "drops": c.drops,
                        "open_threshold": cam.alerts.open_threshold, "close_threshold": cam.alerts.close_threshold})
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

    # -- teardown (the exit stack runs these in reverse order of setup) --------------------------------
    # Bounded by one deadline, shutdown_timeout_s from the first step, whatever a camera or the model does:
    # what is left at the deadline is dropped (counted) and open alerts end. Then the sinks flush.
    def _left(self) -> float:
        """Seconds until the teardown deadline, at least a moment so that work already done can be collected."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.config.runtime.shutdown_timeout_s
        return max(0.2, self._deadline - time.monotonic())

    async def _stop_sources(self) -> None:
        self._left()
        self.batcher.stop_intake()
        await self._stop_camera_sources(list(self.cameras.values()), STOP_REASON, self._deadline)

    async def _stop_camera_sources(self, cams: list[CameraPipeline], reason: str, deadline: float | None) -> None:
        """Stop the cameras' sources; a source that did not stop in time gets its end marker here."""
        for cam in cams:
            cam.stop_reason = reason
            self.batcher.stop_intake(cam.name)
            if cam.ring is not None:
                cam.ring.close()  # a lossless source waiting for a slot wakes up
            if cam.source is not None:
                cam.source.stop()
        await asyncio.gather(*(asyncio.to_thread(cam.source.join, _until(deadline))
                               for cam in cams if cam.source is not None))
        await asyncio.sleep(0)  # let the sources' last callbacks (end markers) run
        for cam in cams:
            if cam.source is not None and getattr(cam.source, "alive", False):
                self.batcher.end_of_stream(cam.name)

    async def _drain_model(self) -> None:
        await self.batcher.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._model_task), self._left())
        except TimeoutError:
            log.warning("shutdown: model still busy at the %.0f s deadline; dropping what is left",
                        self.config.runtime.shutdown_timeout_s)
            self._model_task.cancel()
            for job in self.batcher.drain():
                if not job.end_of_stream:
                    self._on_drop(job, "shutdown")

    async def _finish_cameras(self) -> None:
        cams = list(self.cameras.values())
        await self._finish_camera_scoring(cams, STOP_REASON, self._deadline)
        for cam in cams:
            self._say_stopped(cam, STOP_REASON)

    async def _finish_camera_scoring(self, cams: list[CameraPipeline], reason: str, deadline: float | None) -> None:
        """Wait (until the deadline) for the cameras' end markers to be scored; then end what is left open."""
        try:
            await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in cams)), _until(deadline))
        except TimeoutError:
            log.warning("%s: scoring did not finish in time; ending open alerts now", reason)
        for cam in cams:
            if cam.task is not None and not cam.task.done():
                cam.task.cancel()
            if not cam.finished.is_set():
                await cam.finish(functools.partial(self._dispatch_camera, cam), reason=reason)
                while not cam.results.empty():  # nobody scores them now: free a model stage waiting to deliver
                    cam.results.get_nowait()

    def _say_stopped(self, cam: CameraPipeline, reason: str, *, always: bool = False) -> None:
        """A camera still online or connecting (or any, with always) is now offline for `reason`."""
        if always or cam.counters.status in (CameraStatus.ONLINE, CameraStatus.CONNECTING):
            cam.counters.status, cam.counters.reason = CameraStatus.OFFLINE, reason  # the last stats say so
            self._on_status(cam, StatusChange(cam.name, CameraStatus.OFFLINE, reason))

    async def _stop_supervisor(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        self.supervisor.publish_stats()

    async def _close_publisher(self) -> None:
        self.publisher.publish(Message("available", "offline", retain=True))
        self.publisher.close()


def explanation_support(text_encoder: TextEncoder) -> Callable[[np.ndarray], float]:
    """description embedding -> support in (0, 1) against corevad.explain's reference phrases (blocking)."""
    from corevad.explain import ANOMALY_PHRASES, NORMAL_PHRASES, support

    anomaly = text_encoder.encode_texts(list(ANOMALY_PHRASES))
    normal = text_encoder.encode_texts(list(NORMAL_PHRASES))
    return lambda emb: float(support(emb, anomaly, normal)[0])


def _until(deadline: float | None) -> float:
    """Seconds until the deadline, at least a moment so that work already done can be collected."""
    return 0.2 if deadline is None else max(0.2, deadline - time.monotonic())


def _resolve_sample(cam: CameraConfig) -> CameraConfig:
    if not cam.url.startswith("sample://"):
        return cam
    from .sample import ensure_sample_clip

    return cam.model_copy(update={"url": str(ensure_sample_clip(cam.url[len("sample://"):] or "demo"))})


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
