"""Wiring: sources -> ring buffers -> segments -> batcher -> model stage -> per-camera scoring -> dispatch -> sinks.

App only builds the stages and joins them: each stage owns its state (batcher.Batcher, model_stage.ModelStage,
camera.CameraPipeline, dispatch.Dispatch, supervisor.Supervisor, publisher.Publisher). Long-lived tasks run
in one TaskGroup (named corevad[<camera>].<stage>); an AsyncExitStack tears down in the reverse order of
setup: sources stop, the model drains, cameras finish, the last stats go out, then `offline`, then sinks.
Cameras can be added and removed while the app runs (add_camera, remove_camera).
Each run has a run id that goes into alert ids; alerts a killed run left open end at the next start.
In a group (config `group`, corevad_stream/group.py) the app starts no camera itself: the group member
starts the cameras it leases and stops those it hands over or loses, and the publisher's gate fences them.
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

from .alert_state import ended_by_restart, open_alert_record
from .arming_control import ArmingControl, arming_state_path
from .batcher import Batcher
from .bus_view import BusView, GroupCameras, stale_after
from .camera import CameraPipeline
from .camera_factory import SourceFactory, build_camera, resolve_sample, soon
from .config import CameraConfig, StreamConfig
from .dispatch import AlertRecordBook, Dispatch, encode_jpeg
from .entities import (
    REMOVED_REASON,
    RESTART_REASON,
    STOP_REASON,
    CameraCounters,
    CameraStatus,
    DescriptionUpdate,
    ScoringOutput,
    SegmentJob,
    SegmentResult,
    StatusChange,
)
from .group import HANDOVER_REASON, GroupAlertRecord, GroupMember, LeaseBook, ended_by_failover
from .health import ModelHealth
from .http import CameraSource, HttpServer, LiveFeed
from .messages import Message, StatusRecord
from .metrics import Metrics
from .model_loading import explanation_support, load_models
from .model_stage import ModelStage
from .notify import Notifier
from .publisher import Publisher
from .redact import redact
from .sinks.base import Sink
from .sinks.factory import SinkHealth, build_sinks
from .sinks.mqtt import MqttSink
from .supervisor import Supervisor
from .worker import ModelWorker

log = logging.getLogger(__name__)

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
        self.bus_view: BusView | None = None  # metrics.group_view: the group's other cameras
        self.live_feed = LiveFeed()  # server-sent events of /api/stream
        self.model_health = ModelHealth(down_after_s=config.runtime.model_down_after_s)
        # One sqlite file (or one PostgreSQL database) holds the open-alert record and, when the store is on,
        # the history. store_path: that sqlite file, None on PostgreSQL.
        self.store_location = config.store.location(config.runtime.state_path(), self.prefix)
        self.store_path = self.store_location.path
        self.open_alerts = open_alert_record(self.store_location)
        # Arming commands (MQTT, HTTP) and schedule edges; what commands left survives a restart.
        self.arming = ArmingControl(arming_state_path(config.runtime.state_path(), self.prefix), prefix=self.prefix,
                                    publish=lambda m: self.publisher.publish(m), dispatch=self._dispatch_camera,
                                    drop_waiting=lambda name, reason: self.batcher.drop_waiting(name, reason),
                                    on_change=self._republish_status)
        self._last_status: dict[str, StatusChange] = {}  # camera -> its latest status change (republished)
        self._stack: AsyncExitStack | None = None
        self._deadline: float | None = None  # set when teardown starts: one bound for all of it
        self.sink_health = SinkHealth([])  # the sinks' disk health, once they are built
        self._support: Callable[[np.ndarray], float] | None = None
        self.monitor_id = config.group.monitor(config.runtime.state_path())  # named in every status message
        self.group: GroupMember | None = None
        self._starts: dict[str, int] = {}  # camera -> how many times it was started in this run

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
        # Read before anything is published: a bad file or an unreachable database fails early. A sqlite file is
        # this monitor's own (all of it); a PostgreSQL database may hold other monitors' cameras too. A group
        # member reads none here: it ends the alerts of the cameras it takes over, one by one (group.py).
        own = None if self.store_location.path is not None else [c.name for c in cfg.enabled_cameras()]
        left_open = {} if cfg.group.enabled else self.open_alerts.load(own)
        stack.callback(self.open_alerts.close)
        self.arming.load()
        if cfg.group.enabled:
            self.group = self._group_member()
            self.arming.shared = self.group.book  # a camera keeps its arming when it moves to another member
        self.backend, self.encoder, self.text_encoder = await load_models(
            self.config, stack, backend=self.backend, encoder=self.encoder, text_encoder=self.text_encoder)
        # Sinks first: they outlive every stage, so teardown flushes stages into them before closing.
        built = build_sinks(self.config, prefix=self.prefix, store=self.store_location,
                            live_feed=self.live_feed if self.config.metrics.enabled else None,
                            from_config=self._config_sinks) + self._extra_sinks
        # Arming commands come in through the MQTT sinks of this prefix (built here or brought by the caller);
        # set before any is entered: a sink's first session subscribes to the commands.
        for sink in built:
            if isinstance(sink, MqttSink) and sink.on_command is None and sink.prefix == self.prefix:
                sink.on_command = self.arming.mqtt_command
        for sink in built:
            self.sinks.append(await stack.enter_async_context(sink))
        self.sink_health = SinkHealth(self.sinks)
        if self.group is not None:  # a reconnected MQTT sink replays retained values of its own cameras only
            for sink in self.sinks:
                if isinstance(sink, MqttSink):
                    sink.still_ours = self.group.trusted
        self.publisher = Publisher(self.sinks, bound=rt.sink_queue,
                                   gate=self.group.allows if self.group is not None else None)
        self.batcher = Batcher(max_batch=rt.max_batch, max_wait_s=rt.max_wait_s,
                               max_pending_per_camera=rt.max_pending_per_camera,
                               max_pending_total=rt.max_pending_total, on_drop=self._on_drop,
                               default_policy=rt.overload_policy, on_submit=self._on_submit)
        self.metrics = Metrics(self.counters, self._lag, self.model_health, storage=self.storage_health)
        await self._start_http(stack)
        assert self.backend is not None
        self.worker = ModelWorker(self.backend, self.encoder, keep_snapshot=cfg.alerts.snapshot,
                                  text_encoder=self.text_encoder)
        warm = await asyncio.to_thread(self.worker.warm_up, rt.max_batch, rt.frames_per_segment, rt.frame_size)
        if warm is not None:
            log.info("model warmed up: a batch of %d in %.2f s", rt.max_batch, warm)
        if self.text_encoder is not None:
            self._support = await asyncio.to_thread(explanation_support, self.text_encoder)
        self.notifier = Notifier.from_config(cfg)
        record: AlertRecordBook = GroupAlertRecord(self.group) if self.group is not None else self.open_alerts
        self.dispatch = Dispatch(publish=self.publisher.publish, open_alerts=record,
                                 observe_latency=lambda cam, s: self.metrics.latency.labels(cam).observe(s),
                                 notifier=self.notifier)
        stack.callback(self.dispatch.close)
        self.model_stage = ModelStage(runner=self.worker, batches=self.batcher, health=self.model_health,
                                      overlap=rt.overlap_preprocessing, deliver=self._deliver, on_drop=self._on_drop,
                                      publish=self.publisher.publish, observe_model_s=self.metrics.model_time.observe)
        stack.callback(self.model_stage.close)
        self.supervisor = Supervisor(
            cameras=self.cameras, model=self.model_stage, dispatch=self._dispatch_camera,  # type: ignore[arg-type]
            publish=self.publisher.publish, stats_interval_s=rt.stats_interval_s, run_id=self.run_id,
            sink_stats=lambda: {"dropped": self.publisher.dropped, "errors": self.publisher.errors,
                                "fenced": self.publisher.fenced},
            store_stats=self.sink_health.store, mqtt_stats=self.sink_health.mqtt)
        self._tg = await stack.enter_async_context(asyncio.TaskGroup())
        self.publisher.start(self._tg)
        stack.push_async_callback(self._close_publisher)
        supervisor_task = self._tg.create_task(self.supervisor.run(), name="corevad[stats].tick")
        stack.push_async_callback(self._stop_supervisor, supervisor_task)
        if self.group is not None:  # after the cameras finished: release the leases, leave the group
            stack.push_async_callback(self._leave_group,
                                      self._tg.create_task(self.group.run(), name="corevad[group].lease"))
        stack.push_async_callback(self._finish_cameras)
        self._model_task = self._tg.create_task(self.model_stage.run(), name="corevad[worker].model")
        stack.push_async_callback(self._drain_model)
        self.publisher.publish(Message("available", "online", retain=True))
        # Alerts a previous run left open (it crashed or was killed) end now, "monitor restarted".
        self.publisher.publish_all([self.notifier.complete(m) for m in ended_by_restart(left_open)])
        if self.group is None:  # a group's shared record holds the other members' alerts too
            self.open_alerts.clear(own)
        self.model_stage.announce()
        stack.push_async_callback(self._stop_sources)  # no new segments from here on
        arming_task = self._tg.create_task(self.arming.run(), name="corevad[arming].clock")
        stack.push_async_callback(self._stop_arming, arming_task)  # runs before that: no arming changes while stopping
        if self.group is not None:
            stack.callback(self.group.stop_claiming)  # runs first: no camera starts during teardown
            return
        for cam_cfg in cfg.enabled_cameras():
            await self.add_camera(cam_cfg)

    # -- the group (config `group`): the member starts and stops cameras --------------------------------
    def _group_member(self) -> GroupMember:
        g, store = self.config.group, self.store_location  # the group's database is the store's (config check)
        book = LeaseBook(str(store.url), password=store.password, timeout_s=g.renew_s)
        return GroupMember(book=book, monitor=self.monitor_id, cameras=[c.name for c in self.config.enabled_cameras()],
                           lease_s=g.lease_s, renew_s=g.renew_s, margin_s=g.margin_s, max_cameras=g.max_cameras,
                           start=self._group_start, stop=self._group_stop,
                           publish=lambda m: self.publisher.publish(m))

    async def _group_start(self, name: str, orphan: str | None) -> None:
        """A camera this member just leased: end the alert its previous owner left open, then watch it."""
        if orphan is not None and (end := ended_by_failover(orphan)) is not None:
            self.publisher.publish(self.notifier.complete(end))
        if self._deadline is None and name not in self.cameras:
            await self.add_camera(next(c for c in self.config.enabled_cameras() if c.name == name))

    async def _group_stop(self, name: str, reason: str) -> None:
        if name in self.cameras:
            await self.remove_camera(name, reason=reason)

    async def _leave_group(self, task: asyncio.Task[None]) -> None:
        assert self.group is not None
        task.cancel()
        await self.group.leave()

    async def _start_http(self, stack: AsyncExitStack) -> None:
        m = self.config.metrics
        if not m.enabled:
            return
        pw = m.password()
        store = self.sink_health.store_sink
        cameras: CameraSource = self.camera_overview
        # the other monitors' cameras, from the bus
        if (m.group_view or self.config.group.enabled) and self.config.mqtt is not None:
            broker = self.sink_health.mqtt_sink.broker if self.sink_health.mqtt_sink is not None else None
            self.bus_view = await stack.enter_async_context(BusView(
                mqtt=self.config.mqtt, feed=self.live_feed, local=self.cameras.keys,
                stale_after_s=stale_after(self.config.runtime.stats_interval_s),
                embedded_port=broker.port if broker is not None else None))
            cameras = GroupCameras(self.camera_overview, self.bus_view)
        self.metrics_server = await stack.enter_async_context(HttpServer(
            host=m.host, port=m.port, render_metrics=self.metrics.render, cameras=cameras,
            model=self._model_and_storage, store=store.location if store is not None else None,
            feed=self.live_feed, username=m.username, password=pw.get_secret_value() if pw is not None else None,
            allowed_hosts=m.allowed_hosts, latest_frame=self.latest_frame_jpeg,
            arming=self._arming_command))

    async def _arming_command(self, camera: str, action: str, body: Any) -> Any:
        return await self.arming.http_command(camera, action, body)

    # -- cameras ---------------------------------------------------------------------------------------
    async def add_camera(self, cam_cfg: CameraConfig) -> CameraPipeline:
        """Start a camera while the app runs: its pipeline, its scoring task, its retained state, its source."""
        if cam_cfg.name in self.cameras:
            raise ValueError(f"camera {cam_cfg.name!r} is already running")
        if self._deadline is not None:
            raise RuntimeError("the app is shutting down")
        if cam_cfg.url.startswith("sample://"):
            cam_cfg = await asyncio.to_thread(resolve_sample, cam_cfg)  # generated on first use
        loop = self._loop
        # Alert ids are <camera>-<run id>-<n>: a camera started again in this run (removed, or handed over
        # and taken back in a group) counts its starts into the run id, so its new alerts never reuse an id.
        starts = self._starts[cam_cfg.name] = self._starts.get(cam_cfg.name, 0) + 1
        run_id = self.run_id if starts == 1 else f"{self.run_id}.{starts}"
        cam = build_camera(self.config, cam_cfg, batcher=self.batcher, loop=loop, run_id=run_id,
                           encoder=self.encoder, text_encoder=self.text_encoder, support=self._support,
                           source_factory=self._source_factory,
                           on_status=functools.partial(soon, loop, self._on_status),
                           prompt_template=getattr(self.backend, "template", None))
        self.cameras[cam.name], self.counters[cam.name] = cam, cam.counters
        await self.arming.attach(cam)  # before its source starts: a disarmed camera submits nothing
        cam.task = self._tg.create_task(cam.run(functools.partial(self._dispatch_camera, cam)),
                                        name=f"corevad[{cam.name}].score")
        self.publisher.publish(Message("state", cam.scoring.state, camera=cam.name, retain=True))
        self.publisher.publish(Message("model", cam.health.record(), camera=cam.name, retain=True))
        assert cam.source is not None
        cam.source.start()
        return cam

    async def remove_camera(self, name: str, *, reason: str = REMOVED_REASON) -> None:
        """Stop a camera while the app runs: its source stops, what it cut is still scored (within
        runtime.shutdown_timeout_s), an open alert ends (`reason`, default "camera removed"), its status says
        so, it is gone."""
        cam = self.cameras.get(name)
        if cam is None:
            raise ValueError(f"no camera named {name!r}")
        limit = self.config.runtime.shutdown_timeout_s
        await self._stop_camera_sources([cam], reason, limit)
        await cam.settle(functools.partial(self._dispatch_camera, cam), reason=reason, timeout=limit)
        self._on_status(cam, cam.went_offline(reason, always=True))
        self.arming.detach(name)
        self._last_status.pop(name, None)
        del self.cameras[name], self.counters[name]
        self.batcher.remove_camera(name)

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

    async def _deliver(self, item: SegmentResult | SegmentJob | DescriptionUpdate) -> None:
        """A model result, description or end marker to its camera's scoring queue (a removed camera's are
        discarded)."""
        cam = self.cameras.get(item.job.camera if isinstance(item, SegmentResult) else item.camera)
        if cam is not None and not cam.finished.is_set():
            await cam.results.put(item)

    async def _dispatch_camera(self, cam: CameraPipeline, out: ScoringOutput) -> None:
        await self.dispatch(cam.name, out, snapshot_quality=cam.alerts.snapshot_quality, zones=cam.zone_layout)

    def _lag(self, camera: str) -> float:
        cam = self.cameras.get(camera)
        return cam.lag() if cam is not None else 0.0

    def _on_status(self, cam: CameraPipeline, change: StatusChange | None) -> None:
        if change is None or self.cameras.get(cam.name) is not cam:
            return  # nothing changed, or a late word from a removed camera's source
        # A clean stop or a removal is no warning.
        bad = change.status is CameraStatus.OFFLINE and change.reason not in (STOP_REASON, REMOVED_REASON,
                                                                              HANDOVER_REASON)
        level = logging.WARNING if bad else logging.INFO
        log.log(level, "camera %s: %s%s", cam.name, change.status.value,
                f" ({change.reason})" if change.reason else "")
        self._last_status[cam.name] = change
        self._publish_status(cam, change)

    def _publish_status(self, cam: CameraPipeline, change: StatusChange) -> None:
        self.publisher.publish(Message("status", StatusRecord(
            online=change.status is CameraStatus.ONLINE, state=change.status.value, reason=redact(change.reason),
            url=cam.cfg.safe_url, reconnects=cam.counters.reconnects, time=change.at, monitor=self.monitor_id,
            arming=cam.arming.to_json()), camera=cam.name, retain=True))

    def _republish_status(self, cam: CameraPipeline) -> None:
        """The camera's arming changed: its retained status carries it (once the source has said anything)."""
        change = self._last_status.get(cam.name)
        if change is not None and self.cameras.get(cam.name) is cam:
            self._publish_status(cam, change)

    # -- public ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-camera counters and runtime totals (what <prefix>/stats carries)."""
        return self.supervisor.stats()

    def storage_health(self) -> dict[str, Any]:
        """The event store's and the MQTT outbox's health (state ok/failing, since, pending): None when off."""
        return self.sink_health.storage()

    def _model_and_storage(self) -> dict[str, Any]:
        """/api/model: the model's state, with the storage health beside it (the page shows both)."""
        group = {"group": self.group.health()} if self.group is not None else {}
        return {**self.model_health.snapshot(), **self.sink_health.storage(), **group}

    def camera_overview(self) -> list[dict[str, Any]]:
        """What /api/cameras shows, one entry per camera."""
        return [{**cam.overview(), "monitor": self.monitor_id} for cam in self.cameras.values()]

    def latest_frame_jpeg(self, name: str) -> bytes | None:
        """The camera's newest frame as a JPEG, encoded by the alert snapshot's own function (so it looks like
        the snapshots: same quality, same drawing); None until a frame arrived. KeyError: no such camera."""
        cam = self.cameras[name]
        frame = cam.latest_frame
        return None if frame is None else encode_jpeg(frame, cam.alerts.snapshot_quality, zones=cam.zone_layout)

    def failed_cameras(self) -> list[str]:
        """Cameras whose source is offline (gave up or never connected): a finished run with these failed."""
        return [n for n, c in self.counters.items() if c.status is CameraStatus.OFFLINE and c.reason != STOP_REASON]

    async def wait_finished(self, timeout: float | None = None) -> None:
        """Wait until every camera's source ended and all its segments were scored and published."""
        waits = [cam.finished.wait() for cam in self.cameras.values()]
        await asyncio.wait_for(asyncio.gather(*waits), timeout)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set or every camera has finished, whichever comes first (a group member's
        cameras come and go: it runs until `stop`)."""
        if self.group is not None:
            await stop.wait()
            return
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
        await self._stop_camera_sources(list(self.cameras.values()), STOP_REASON, self._left())

    async def _stop_camera_sources(self, cams: list[CameraPipeline], reason: str, timeout: float) -> None:
        """Stop the cameras' sources; a source that did not stop in time gets its end marker here."""
        for cam in cams:
            self.batcher.stop_intake(cam.name)
            cam.stop_source(reason)
        await asyncio.gather(*(asyncio.to_thread(cam.source.join, timeout)
                               for cam in cams if cam.source is not None))
        await asyncio.sleep(0)  # let the sources' last callbacks (end markers) run
        for cam in cams:
            if cam.source_alive():
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
        await asyncio.gather(*(cam.settle(functools.partial(self._dispatch_camera, cam), reason=STOP_REASON,
                                          timeout=self._left()) for cam in list(self.cameras.values())))
        for cam in self.cameras.values():
            self._on_status(cam, cam.went_offline(STOP_REASON))

    async def _stop_arming(self, task: asyncio.Task[None]) -> None:
        self.arming.close()
        try:
            await asyncio.wait_for(asyncio.shield(task), self._left())
        except TimeoutError:
            task.cancel()

    async def _stop_supervisor(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        self.supervisor.publish_stats()

    async def _close_publisher(self) -> None:
        self.publisher.publish(Message("available", "offline", retain=True))
        self.publisher.close()


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
