"""Wiring: sources -> ring buffers -> segments -> batcher -> model worker -> per-camera scoring -> sinks.

One App owns everything: its long-lived tasks run in one TaskGroup (named corevad[<camera>].<stage>),
and an AsyncExitStack tears down in the reverse order of setup. Stages never import each other; this
module joins them with bounded queues. Programmatic use (replay, tests):

    async with App(config, backend=my_backend, encoder=my_encoder, sinks=[MemorySink()]) as app:
        await app.wait_finished()        # every finite source ended and every segment was scored
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import cv2
import numpy as np

from corevad.models.base import ImageTextEncoder, VLMBackend

from .batcher import Batcher
from .config import CameraConfig, OverloadPolicy, StreamConfig
from .entities import CameraCounters, CameraStatus, SegmentJob, StatusChange
from .messages import Message
from .metrics import Metrics, MetricsServer
from .publisher import Publisher
from .ring import FrameRing
from .scoring import CameraScoring, ScoringOutput
from .segmenter import Segmenter
from .sinks.base import Sink
from .sinks.jsonl import JsonlSink
from .sources import FRAMELESS_SCHEME, FramelessSource, Source, StatusCallback, VideoSource
from .worker import ModelWorker, SegmentResult

log = logging.getLogger(__name__)

SourceFactory = Callable[[CameraConfig, Segmenter, CameraCounters, StatusCallback], Source]
_END = object()


class _Camera:
    """Everything the app keeps for one camera."""

    def __init__(self, cfg: CameraConfig, counters: CameraCounters, scoring: CameraScoring,
                 ring: FrameRing | None, results: asyncio.Queue[Any]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.counters = counters
        self.scoring = scoring
        self.ring = ring
        self.results = results
        self.source: Source | None = None
        self.emitted = 0
        self.accounted = 0
        self.source_done = False
        self.end_sent = False
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class App:
    """The streaming monitor as an async context manager.

    backend/encoder: give models directly (replay, tests) or leave None to build them from
    config.model. sinks: extra sinks (entered and closed by the app) on top of the config's
    (jsonl, mqtt) unless config_sinks=False. source_factory: build custom sources per camera.
    """

    def __init__(self, config: StreamConfig, *, backend: VLMBackend | None = None,
                 encoder: ImageTextEncoder | None = None, sinks: Sequence[Sink] = (),
                 config_sinks: bool = True, source_factory: SourceFactory | None = None,
                 prefix: str | None = None) -> None:
        self.config = config
        self.backend = backend
        self.encoder = encoder
        self._extra_sinks = list(sinks)
        self._config_sinks = config_sinks
        self._source_factory = source_factory
        self.prefix = prefix or (config.mqtt.prefix if config.mqtt is not None else "corevad")
        self.cameras: dict[str, _Camera] = {}
        self.counters: dict[str, CameraCounters] = {}
        self.sinks: list[Sink] = []
        self.metrics_server: MetricsServer | None = None
        self._stack: AsyncExitStack | None = None
        self._closing = threading.Event()
        self._started = 0.0
        self._stopped = False

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
        if self.backend is None:
            from .models import build_models

            backend, self.encoder = await asyncio.to_thread(build_models, cfg.model, with_clip=cfg.uses_features())
            self.backend = backend
            stack.callback(backend.close)
        # Sinks first: they outlive every stage, so teardown flushes stages into them before closing.
        for sink in self._make_sinks():
            self.sinks.append(await stack.enter_async_context(sink))  # type: ignore[arg-type]
        self.publisher = Publisher(self.sinks, bound=rt.sink_queue)
        self.batcher = Batcher(max_batch=rt.max_batch, max_wait_s=rt.max_wait_s,
                               max_pending_per_camera=rt.max_pending_per_camera,
                               max_pending_total=rt.max_pending_total, on_drop=self._on_drop,
                               default_policy=rt.overload_policy)
        self.metrics = Metrics(self.counters, self.batcher.lag)
        if cfg.metrics.enabled:
            pw = cfg.metrics.password()
            self.metrics_server = await stack.enter_async_context(MetricsServer(
                self.metrics, host=cfg.metrics.host, port=cfg.metrics.port, username=cfg.metrics.username,
                password=pw.get_secret_value() if pw is not None else None))
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="corevad[worker].model")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        self._executor = executor
        assert self.backend is not None
        self.worker = ModelWorker(self.backend, self.encoder, keep_snapshot=cfg.alerts.snapshot)
        for cam_cfg in cfg.enabled_cameras():
            if cam_cfg.url.startswith("sample://"):
                cam_cfg = await asyncio.to_thread(_resolve_sample, cam_cfg)  # generated on first use
            self._add_camera(cam_cfg)
        self._tg = await stack.enter_async_context(asyncio.TaskGroup())
        stack.push_async_callback(self._shutdown)  # runs before the TaskGroup waits for its tasks
        self._lane_tasks = self.publisher.start(self._tg)
        self._worker_task = self._tg.create_task(self._worker_loop(), name="corevad[worker].model")
        for cam in self.cameras.values():
            cam.task = self._tg.create_task(self._score_loop(cam), name=f"corevad[{cam.name}].score")
        self._stats_task = self._tg.create_task(self._stats_loop(), name="corevad[stats].tick")
        self.publisher.publish(Message("available", "online", retain=True))
        for cam in self.cameras.values():
            self.publisher.publish(Message("state", "normal", camera=cam.name, retain=True))
            assert cam.source is not None
            cam.source.start()

    def _make_sinks(self) -> list[Sink]:
        sinks: list[Sink] = []
        cfg = self.config
        if self._config_sinks and cfg.jsonl is not None:
            sinks.append(JsonlSink(cfg.jsonl.path, kinds=set(cfg.jsonl.kinds) if cfg.jsonl.kinds else None,
                                   prefix=self.prefix))
        if self._config_sinks and cfg.mqtt is not None:
            from .sinks.mqtt import MqttSink

            sinks.append(MqttSink(cfg.mqtt))
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
        use_features = refinement.use_features and self.encoder is not None and not frameless
        scoring = CameraScoring(cam_cfg.name, params=refinement.params(), alerts=alerts.params(),
                                use_features=use_features, lrc=refinement.lrc, counters=counters,
                                top_k=alerts.explanation_top_k)
        results: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * rt.max_batch)  # policy: worker waits
        cam = _Camera(cam_cfg, counters, scoring, ring, results)
        self.cameras[cam.name] = cam
        self.counters[cam.name] = counters
        policy = cfg.policy_for(cam_cfg)
        self.batcher.add_camera(cam.name, policy)
        segmenter = Segmenter(cam.name, ring=ring, frames_per_segment=rt.frames_per_segment,
                              emit=self._emitter(cam, policy), on_no_slot=self._no_slot(cam),
                              segment_seconds=rt.segment_seconds)

        def on_status(change: StatusChange) -> None:
            self._loop.call_soon_threadsafe(self._on_status, cam, change)

        if self._source_factory is not None:
            cam.source = self._source_factory(cam_cfg, segmenter, counters, on_status)
        elif frameless:
            cam.source = FramelessSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=on_status)
        else:
            cam.source = VideoSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=on_status,
                                     reconnect=rt.reconnect)
        def on_exit() -> None:
            self._loop.call_soon_threadsafe(self._on_source_exit, cam)

        cam.source.on_exit = on_exit

    # -- source side (called from source threads) ------------------------------------------------------
    def _emitter(self, cam: _Camera, policy: OverloadPolicy) -> Callable[[SegmentJob], None]:
        loop = self._loop

        def offer(job: SegmentJob) -> None:
            cam.emitted += 1
            cam.counters.segments += 1
            self.batcher.offer(job)

        async def put(job: SegmentJob) -> None:
            cam.emitted += 1
            cam.counters.segments += 1
            await self.batcher.put(job)

        def emit(job: SegmentJob) -> None:
            if self._closing.is_set():
                job.release()
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

    def _no_slot(self, cam: _Camera) -> Callable[[int], None]:
        def lost(index: int) -> None:
            def count() -> None:
                cam.emitted += 1
                cam.counters.segments += 1
                cam.counters.drops += 1
                cam.accounted += 1
                self._check_done(cam)
            self._loop.call_soon_threadsafe(count)

        return lost

    # -- loop side -------------------------------------------------------------------------------------
    def _on_drop(self, job: SegmentJob, reason: str) -> None:
        cam = self.cameras.get(job.camera)
        if cam is None:
            return
        cam.counters.drops += 1
        cam.accounted += 1
        log.debug("camera %s: dropped segment %d (%s)", cam.name, job.index, reason)
        self._check_done(cam)

    def _on_status(self, cam: _Camera, change: StatusChange) -> None:
        level = logging.WARNING if change.status is CameraStatus.OFFLINE else logging.INFO
        log.log(level, "camera %s: %s%s", cam.name, change.status.value,
                f" ({change.reason})" if change.reason else "")
        self.publisher.publish(Message("status", {
            "status": "online" if change.status is CameraStatus.ONLINE else "offline",
            "state": change.status.value, "reason": change.reason, "url": cam.cfg.safe_url,
            "reconnects": cam.counters.reconnects, "time": change.at,
        }, camera=cam.name, retain=True))

    def _on_source_exit(self, cam: _Camera) -> None:
        cam.source_done = True
        self._check_done(cam)

    def _check_done(self, cam: _Camera) -> None:
        if cam.source_done and not cam.end_sent and cam.accounted >= cam.emitted:
            cam.end_sent = True
            self._tg.create_task(cam.results.put(_END), name=f"corevad[{cam.name}].end")

    async def _worker_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.batcher.next_batch()
            if not batch:
                return
            try:
                results: list[SegmentResult] = await loop.run_in_executor(self._executor, self.worker.infer, batch)
            except Exception:  # noqa: BLE001 - never lose the worker; the segments count as dropped
                log.exception("model worker failed on a batch of %d", len(batch))
                for job in batch:
                    job.release()
                    self._on_drop(job, "worker error")
                continue
            self.metrics.model_time.observe(results[0].model_s)
            for r in results:
                await self.cameras[r.job.camera].results.put(r)

    async def _score_loop(self, cam: _Camera) -> None:
        while True:
            item = await cam.results.get()
            if item is _END:
                break
            try:
                out = cam.scoring.process(item)
            except Exception:  # noqa: BLE001 - one camera's scoring bug must not stop the others
                log.exception("camera %s: scoring failed on segment %d", cam.name, item.job.index)
                out = ScoringOutput()
            cam.accounted += 1
            await self._publish_scoring(cam, out)
            self._check_done(cam)
        try:
            await self._publish_scoring(cam, cam.scoring.finish())
        except Exception:  # noqa: BLE001 - same boundary as process()
            log.exception("camera %s: final scoring failed", cam.name)
        cam.finished.set()

    async def _publish_scoring(self, cam: _Camera, out: ScoringOutput) -> None:
        for m in out.messages:
            if m.kind == "score" and isinstance(m.payload, dict):
                self.metrics.latency.labels(cam.name).observe(max(0.0, float(m.payload["latency_s"])))
        self.publisher.publish_all(out.messages)
        if out.snapshot is not None:
            quality = self.config.camera_section(cam.cfg, "alerts").snapshot_quality
            jpeg = await asyncio.to_thread(_jpeg, out.snapshot, quality)
            if jpeg is not None:
                self.publisher.publish(Message("snapshot", jpeg, camera=cam.name, retain=True))

    async def _stats_loop(self) -> None:
        interval = self.config.runtime.stats_interval_s
        last_pub = time.monotonic()
        prev = {name: (c.frames, c.scored) for name, c in self.counters.items()}
        prev_t = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            dt = max(now - prev_t, 1e-6)
            for name, c in self.counters.items():
                f0, s0 = prev[name]
                c.fps_in, c.segments_per_s = (c.frames - f0) / dt, (c.scored - s0) / dt
                c.queue_lag_s = self.batcher.lag(name, now)
                prev[name] = (c.frames, c.scored)
            prev_t = now
            if now - last_pub >= interval:
                last_pub = now
                self.publisher.publish(Message("stats", self.stats()))

    # -- public ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-camera counters and runtime totals (what <prefix>/stats carries)."""
        return {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "cameras": {name: c.snapshot() for name, c in self.counters.items()},
            "model": {"backend": getattr(self.backend, "name", "?"), "batches": self.worker.batches,
                      "errors": self.worker.errors, "pending": self.batcher.pending()},
            "sinks": {"dropped": self.publisher.dropped, "errors": self.publisher.errors},
        }

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
        """Stop sources, flush in-flight segments through the model and scoring, publish offline."""
        if self._stopped:
            return
        self._stopped = True
        timeout = self.config.runtime.shutdown_timeout_s
        self._closing.set()
        for cam in self.cameras.values():
            if cam.source is not None:
                cam.source.stop()
        for cam in self.cameras.values():
            if cam.source is not None:
                await asyncio.to_thread(cam.source.join, timeout)
        await self.batcher.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._worker_task), timeout)
        except TimeoutError:
            log.warning("shutdown: model still busy after %.0f s; dropping what is left", timeout)
            self._worker_task.cancel()
            for job in self.batcher.drain():
                self._on_drop(job, "shutdown")
        for cam in self.cameras.values():
            cam.source_done = True
            cam.accounted = max(cam.accounted, cam.emitted)  # what never reached the scorer is gone
            self._check_done(cam)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in self.cameras.values())), timeout)
        self._stats_task.cancel()
        for cam in self.cameras.values():
            if cam.counters.status in (CameraStatus.ONLINE, CameraStatus.CONNECTING):
                self._on_status(cam, StatusChange(cam.name, CameraStatus.OFFLINE, "monitor stopped"))
            if cam.task is not None and not cam.task.done():
                cam.task.cancel()
        self.publisher.publish(Message("stats", self.stats()))
        self.publisher.publish(Message("available", "offline", retain=True))
        self.publisher.close()


def _resolve_sample(cam: CameraConfig) -> CameraConfig:
    if not cam.url.startswith("sample://"):
        return cam
    from .sample import ensure_sample_clip

    return cam.model_copy(update={"url": str(ensure_sample_clip(cam.url[len("sample://"):] or "demo"))})


def _jpeg(frame_rgb: np.ndarray, quality: int) -> bytes | None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
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
