"""Benchmark replay: push UCF-Crime / XD-Violence videos through the live runtime as concurrent cameras.

Every video becomes one camera of a corevad_stream.App, so replay exercises the same sources, batcher,
model worker, causal scoring (corevad.causal.CausalScorer) and alert hysteresis (corevad.alerts) that
serve live cameras; only the clock differs (sources run as fast as the pipeline takes them, and the
lossless `block` overload policy replaces the live drop policies). Two inputs:
  - a folder of the benchmark videos, decoded by the same VideoSource as files and RTSP cameras;
  - a recorded responses file alone: frame-less segments (frameless://<frames>) answered by the replay
    backend, through the same batcher, scoring and alerts, without decoding anything.
Videos run in waves of `concurrency` cameras (longest first, so a wave's cameras end together): one App
per wave keeps ring-buffer memory bounded by the wave, not by the whole benchmark.
Scores come back from the `score` messages and alerts from the `events` messages the run published.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corevad.alerts import AlertParams
from corevad.benchmarks import VideoGT
from corevad.explain import classify
from corevad.latency import FPS, delay_stats, detection_delay, false_alerts_per_hour, laap_approx
from corevad.metrics import ClassMetric, frame_ap, frame_auc, per_class_metrics
from corevad.models.base import Answer, Clip, ImageTextEncoder, VLMBackend, answers
from corevad.models.text import TextEncoder
from corevad.params import CausalParams, OfflineParams
from corevad.pipeline import score_offline

from .app import App
from .config import StreamConfig, config_from_dict
from .errors import StreamError
from .sinks.base import Sink
from .sinks.memory import MemorySink

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
_BAD = re.compile(r"[^A-Za-z0-9_\-]")


# Measured with tools/bench_replay.py on the 2-core dev machine: the live batching (20 ms max wait, batch 8,
# 3 pending per camera) replays ~1,300 segments/s with 32 cameras; no wait, deep per-camera queues and big
# batches ~3,000/s. Replay is lossless (policy block), so deep queues cost memory only, not freshness.
FRAMELESS_RUNTIME = {"max_batch": 64, "max_wait_s": 0.0, "max_pending_per_camera": 32, "max_pending_total": 4096}
# Decoded frames live in ring buffers sized from the per-camera bound: keep it small.
DECODED_RUNTIME = {"max_batch": 16, "max_wait_s": 0.0, "max_pending_per_camera": 4}


class ReplayError(StreamError):
    """A replay input is missing or inconsistent (names the video and what is wrong)."""


@dataclass(frozen=True, slots=True)
class ReplayInput:
    """One benchmark video and what its camera reads: a file path or frameless://<frames>?fps=30."""

    gt: VideoGT
    url: str


@dataclass(frozen=True, slots=True)
class ReplayAlert:
    """An alert the run published, in video time (segment indices; 1 segment = 1 s at 30 fps)."""

    video: str
    start_segment: int
    end_segment: int
    peak_score: float
    explanation: tuple[str, ...]

    def interval(self, segment_s: float = 1.0) -> tuple[float, float]:
        return self.start_segment * segment_s, (self.end_segment + 1) * segment_s

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "start_segment": self.start_segment, "end_segment": self.end_segment,
                "peak_score": round(self.peak_score, 6), "explanation": list(self.explanation)}


@dataclass(slots=True)
class VideoReplay:
    """One video's online result: scores per segment and per frame (exactly gt.frames), alerts."""

    gt: VideoGT
    segment_scores: np.ndarray
    labels: np.ndarray
    alerts: list[ReplayAlert]
    missing_segments: int = 0
    extra_segments: int = 0
    unparsed: int = 0

    @property
    def frame_scores(self) -> np.ndarray:
        return np.repeat(self.segment_scores, 30)[: self.gt.frames]


@dataclass(slots=True)
class ReplayResult:
    """All videos of one replay, with the parameters it ran under."""

    videos: list[VideoReplay]
    params: CausalParams
    alert_params: AlertParams
    backend: str
    use_features: bool
    wall_s: float
    segments: int
    drops: int = 0
    stats: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.wall_s if self.wall_s > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class ProtocolFigures:
    """Frame-level and latency-aware figures of one protocol (online or offline) on one set of videos."""

    auc: float
    ap: float
    laap: float
    per_class: list[ClassMetric]
    latency_frames: int

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "ap": self.ap, "laap_approx": self.laap, "laap_latency_frames": self.latency_frames,
                "per_class": [{"class": c.cls, "auc": c.auc, "ap": c.ap, "videos": c.videos}
                              for c in self.per_class]}


@dataclass(frozen=True, slots=True)
class AlertFigures:
    """Detection delay on anomalous videos and false alerts per hour on normal ones."""

    anomalous_videos: int
    detected: int
    alerted_before_onset: int
    median_delay_s: float
    p90_delay_s: float
    mean_delay_s: float
    false_alerts: int
    normal_hours: float
    false_alerts_per_hour: float
    alerts: int
    publication_latency_s: float
    # The same delays without the videos already alerted at the GT start (delay 0): how fast a new alert
    # follows an onset the monitor had not flagged yet.
    median_delay_after_onset_s: float = float("nan")
    p90_delay_after_onset_s: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


# -- inputs --------------------------------------------------------------------------------------------
def camera_names(videos: Sequence[VideoGT]) -> dict[str, str]:
    """Video name -> a topic-safe, unique camera name (XD names carry '.', spaces and more)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for v in videos:
        base = _BAD.sub("_", v.name).strip("_-")[:56] or "video"
        if not base[0].isalnum():
            base = "v" + base
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base[:56]}-{k}"
        used.add(name)
        out[v.name] = name
    return out


def frameless_inputs(videos: Sequence[VideoGT], fps: float = FPS) -> list[ReplayInput]:
    """Responses-only replay: one frame-less camera per video with the GT frame count."""
    return [ReplayInput(v, f"frameless://{v.frames}?fps={fps:g}") for v in videos]


def video_inputs(videos: Sequence[VideoGT], folder: str | Path, *, skip_missing: bool = False
                 ) -> tuple[list[ReplayInput], list[str]]:
    """Decoded replay: find each video's file under `folder` (recursively; name + a video extension)."""
    root = Path(folder)
    if not root.is_dir():
        raise ReplayError(f"video folder {root} does not exist")
    index: dict[str, Path] = {}
    for p in root.rglob("*"):
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file():
            index.setdefault(p.stem, p)
            index.setdefault(p.stem.replace("#", ""), p)
    found: list[ReplayInput] = []
    missing: list[str] = []
    for v in videos:
        path = index.get(v.name)
        if path is None:
            if not skip_missing:
                raise ReplayError(f"video {v.name!r}: no file {v.name}.mp4 (or {'/'.join(VIDEO_EXTENSIONS)}) "
                                  f"under {root}")
            missing.append(v.name)
            continue
        found.append(ReplayInput(v, str(path)))
    return found, missing


class _CameraBackend:
    """Answers clips of camera `c` as the wrapped backend answers video `videos[c]` (replay backend keys)."""

    def __init__(self, inner: VLMBackend, videos: Mapping[str, str]) -> None:
        self.inner = inner
        self.videos = dict(videos)
        self.name = inner.name
        prepare, run = getattr(inner, "prepare", None), getattr(inner, "run", None)
        if prepare is not None and run is not None:
            # Keep the inner backend's two-stage form, so a decoded replay overlaps preprocessing with the
            # model as the live monitor does (the worker looks these up by name).
            self.prepare = lambda clips: prepare(self._map(clips))
            self.run = run
        # Two-phase delivery (describe on_demand / the replay backend's deferred) goes through too.
        self.two_phase = bool(getattr(inner, "two_phase", False))
        verdicts = getattr(inner, "verdicts", None)
        if verdicts is not None:
            self.verdicts = lambda clips, prepared=None: verdicts(self._map(clips), prepared)

    def _map(self, clips: Sequence[Clip]) -> list[Clip]:
        return [dataclasses.replace(c, source=self.videos.get(c.source, c.source)) for c in clips]

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        return self.inner.answer(self._map(clips))

    def answer_scored(self, clips: Sequence[Clip]) -> list[Answer]:
        """The inner backend's label probabilities too (None where it gives none)."""
        return answers(self.inner, self._map(clips))

    def close(self) -> None:
        pass  # the caller owns the wrapped backend


# -- running --------------------------------------------------------------------------------------------
def replay_config(cameras: list[dict[str, Any]], *, refinement: Mapping[str, Any] | None = None,
                  alerts: Mapping[str, Any] | None = None, runtime: Mapping[str, Any] | None = None,
                  mqtt: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None) -> StreamConfig:
    """The runtime config of one replay wave: lossless, no metrics port, no snapshots unless asked."""
    rt = {"overload_policy": "block", "sink_queue": 10_000_000, "stats_interval_s": 3600.0,
          "shutdown_timeout_s": 600.0, **(runtime or {})}
    data: dict[str, Any] = {
        "cameras": cameras, "metrics": {"enabled": False}, "runtime": rt, "store": {"enabled": False},
        "refinement": dict(refinement or {}), "alerts": {"snapshot": False, **(alerts or {})},
        "mqtt": dict(mqtt) if mqtt else None,
    }
    if model:
        data["model"] = dict(model)
    return config_from_dict(data, source="<replay>")


async def run_replay(
    inputs: Sequence[ReplayInput],
    *,
    backend: VLMBackend,
    encoder: ImageTextEncoder | None = None,
    text_encoder: TextEncoder | None = None,
    refinement: Mapping[str, Any] | None = None,
    alerts: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
    mqtt: Mapping[str, Any] | None = None,
    concurrency: int = 32,
    sinks: Sequence[Sink] = (),
    on_video: Callable[[VideoGT], None] | None = None,
    timeout_s: float | None = None,
) -> ReplayResult:
    """Replay `inputs` through App waves of `concurrency` cameras; collect online scores and alerts."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not inputs:
        raise ReplayError("nothing to replay: no videos")
    if runtime is None:
        frameless = all(i.url.startswith("frameless://") for i in inputs)
        runtime = FRAMELESS_RUNTIME if frameless else DECODED_RUNTIME
    names = camera_names([i.gt for i in inputs])
    video_of = {cam: video for video, cam in names.items()}
    wrapped = _CameraBackend(backend, video_of)
    order = sorted(inputs, key=lambda i: -i.gt.frames)
    results: dict[str, VideoReplay] = {}
    async with contextlib.AsyncExitStack() as stack:
        if "state_dir" not in runtime:
            # A replay's own state (the open-alert record): one shared with a live monitor or another replay
            # under the default state directory made its waves "end" alerts of theirs (and crash on them).
            state = stack.enter_context(tempfile.TemporaryDirectory(prefix="corevad-replay-"))
            runtime = {**runtime, "state_dir": state}
        if mqtt:
            sinks = [*sinks, await stack.enter_async_context(_mqtt_sink(mqtt))]
        return await _waves(inputs, order, names, wrapped, backend.name, encoder=encoder,
                            text_encoder=text_encoder, refinement=refinement,
                            alerts=alerts, runtime=runtime, concurrency=concurrency, sinks=sinks,
                            on_video=on_video, timeout_s=timeout_s, results=results)


@contextlib.asynccontextmanager
async def _mqtt_sink(mqtt: Mapping[str, Any]) -> AsyncIterator[Sink]:
    """One MQTT connection for the whole replay, connected before any camera starts.

    The live sink keeps only the latest score per topic while disconnected and bounds its queue (fresh
    beats complete for cameras); replay wants every message, so scores go at QoS 1 with no live bound,
    and the waves only start once the broker has accepted the connection.
    """
    from .sinks.mqtt import MqttConfig, MqttSink

    data = dict(mqtt)
    data = {"live_queue": 10_000_000, "drain_timeout_s": 120.0, **data,
            "qos": {"score": 1, **dict(data.get("qos") or {})}}
    cfg = MqttConfig.model_validate(data)
    async with MqttSink(cfg) as sink:
        try:
            await sink.wait_connected(cfg.connect_timeout_s)
        except TimeoutError:
            raise ReplayError(f"MQTT broker {cfg.host}:{cfg.port} did not accept a connection within "
                              f"{cfg.connect_timeout_s:g} s") from None
        yield _Borrowed(sink)


class _Borrowed:
    """A sink the replay owns across waves: each wave's App sends to it but does not close it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name

    async def __aenter__(self) -> _Borrowed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: Any) -> None:
        await self.inner.send(message)


async def _waves(inputs: Sequence[ReplayInput], order: list[ReplayInput], names: dict[str, str],
                 wrapped: VLMBackend, backend_name: str, *, encoder: ImageTextEncoder | None,
                 text_encoder: TextEncoder | None = None,
                 refinement: Mapping[str, Any] | None, alerts: Mapping[str, Any] | None,
                 runtime: Mapping[str, Any], concurrency: int, sinks: Sequence[Sink],
                 on_video: Callable[[VideoGT], None] | None, timeout_s: float | None,
                 results: dict[str, VideoReplay]) -> ReplayResult:
    t0 = time.perf_counter()
    segments = drops = 0
    stats: list[dict[str, Any]] = []
    params = alert_params = None
    use_features = False
    for w in range(0, len(order), concurrency):
        wave = order[w:w + concurrency]
        cfg = replay_config([{"name": names[i.gt.name], "url": i.url, "rate": "fast", "fps": FPS}
                             for i in wave], refinement=refinement, alerts=alerts, runtime=runtime)
        params = cfg.refinement.params()
        alert_params = cfg.alerts.params()
        mem = MemorySink(name="replay")
        async with App(cfg, backend=wrapped, encoder=encoder, sinks=[mem, *sinks], text_encoder=text_encoder) as app:
            use_features = use_features or any(c.scoring.use_features for c in app.cameras.values())
            watchers = []
            if on_video is not None:
                for i in wave:
                    watchers.append(asyncio.ensure_future(_notify(app, names[i.gt.name], i.gt, on_video)))
            try:
                await app.wait_finished(timeout_s)
            finally:
                for t in watchers:
                    t.cancel()
            drops += sum(c.drops for c in app.counters.values())
        stats.extend(m.payload for m in mem.of("stats") if isinstance(m.payload, dict))
        for i in wave:
            vr = _collect(i.gt, names[i.gt.name], mem)
            segments += int(np.isfinite(vr.segment_scores).sum()) + vr.extra_segments
            results[i.gt.name] = vr
    assert params is not None and alert_params is not None
    ordered = [results[i.gt.name] for i in inputs]
    return ReplayResult(ordered, params, alert_params, backend_name, use_features, time.perf_counter() - t0,
                        segments, drops, stats)


async def _notify(app: App, camera: str, gt: VideoGT, cb: Callable[[VideoGT], None]) -> None:
    await app.cameras[camera].finished.wait()
    cb(gt)


def _collect(gt: VideoGT, camera: str, mem: MemorySink) -> VideoReplay:
    """One video's online scores and answer labels from its `score` messages, alerts from `events`."""
    n = math.ceil(gt.frames / 30)
    scores = np.full(n, np.nan)
    labels = np.zeros(n)
    extra = unparsed = 0
    for m in mem.of("score", camera):
        p = m.payload
        assert isinstance(p, dict)
        i = int(p["index"])
        if i >= n:
            extra += 1  # the decoder found more frames than the annotation counts
            continue
        if not np.isnan(scores[i]):
            raise ReplayError(f"video {gt.name}: segment {i} was scored twice")
        if not p.get("available", True):
            continue  # no valid model answer for this segment: no score (held from the previous one below)
        unparsed += 0 if p.get("parsed", True) else 1
        # Exact (unrounded) scores: rounding to 1e-6 ties many small text-only scores and moves the AUC.
        scores[i] = float(p["score"])
        labels[i] = float(p["raw_label"])
    missing = int(np.isnan(scores).sum())
    if missing:
        # Fewer decoded frames than annotated (or dropped segments): hold the last score, count them.
        log.warning("video %s: %d of %d segments have no online score; holding the previous one",
                    gt.name, missing, n)
        scores = _hold(scores)
    alerts = []
    for m in mem.of("events"):
        p = m.payload
        assert isinstance(p, dict)
        a = p["after"]
        if p["type"] == "end" and a["camera"] == camera:
            alerts.append(ReplayAlert(gt.name, int(a["start_segment"]), int(a["end_segment"]),
                                      float(a["peak_score"]), tuple(a["explanation"])))
    return VideoReplay(gt, scores, labels, alerts, missing, extra, unparsed)


def _hold(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    last = 0.0
    for k in range(out.size):
        if np.isnan(out[k]):
            out[k] = last
        else:
            last = out[k]
    return out


# -- figures --------------------------------------------------------------------------------------------
def online_figures(result: ReplayResult, videos: Sequence[VideoReplay] | None = None) -> ProtocolFigures:
    vids = list(result.videos if videos is None else videos)
    return _figures([v.gt for v in vids], [v.frame_scores for v in vids], result.params.delay * 30)


def offline_figures(videos: Sequence[VideoReplay], params: OfflineParams = OfflineParams()) -> ProtocolFigures:
    """The paper's offline protocol (corevad.pipeline.score_offline) on the same answers (text-only)."""
    fs = [score_offline(v.labels, v.gt.frames, params).frame_scores for v in videos]
    return _figures([v.gt for v in videos], fs, 0)


def offline_frame_scores(videos: Sequence[VideoReplay], params: OfflineParams = OfflineParams()
                         ) -> list[np.ndarray]:
    return [score_offline(v.labels, v.gt.frames, params).frame_scores for v in videos]


def _figures(gts: Sequence[VideoGT], frame_scores: Sequence[np.ndarray], latency_frames: int) -> ProtocolFigures:
    gt = np.concatenate([g.gt for g in gts])
    s = np.concatenate(frame_scores)
    both = gt.min() != gt.max()
    return ProtocolFigures(
        auc=frame_auc(gt, s) if both else float("nan"), ap=frame_ap(gt, s) if both else float("nan"),
        laap=laap_approx(frame_scores, [g.spans for g in gts], latency_frames=latency_frames),
        per_class=per_class_metrics(gts, frame_scores, with_ap=True), latency_frames=latency_frames)


def alert_figures(result: ReplayResult, videos: Sequence[VideoReplay] | None = None) -> AlertFigures:
    """Delay from GT start to the first published alert (per anomalous video) and false alerts/hour.

    An alert is published once its opening segment's score is final: (lookahead + 1) segments after the
    segment starts; that publication latency is part of the delay.
    """
    vids = list(result.videos if videos is None else videos)
    latency = (result.params.delay + 1) * 1.0
    delays: list[float | None] = []
    normal = []
    for v in vids:
        iv = [a.interval() for a in v.alerts]
        if v.gt.is_anomalous:
            delays.append(detection_delay(v.gt.spans, iv, FPS, latency_s=latency))
        else:
            normal.append((v.gt.frames, v.gt.spans, iv))
    st = delay_stats(delays)
    late = delay_stats([d for d in delays if d is not None and d > 0.0])
    fa = false_alerts_per_hour(normal, FPS)
    return AlertFigures(st.videos, st.detected, sum(1 for d in delays if d == 0.0), st.median_s, st.p90_s,
                        st.mean_s, fa.false_alerts, fa.hours, fa.per_hour, sum(len(v.alerts) for v in vids),
                        latency, late.median_s, late.p90_s)


__all__ = [
    "AlertFigures", "ProtocolFigures", "ReplayAlert", "ReplayError", "ReplayInput",
    "ReplayResult", "VideoReplay",
    "alert_figures", "camera_names", "frameless_inputs", "offline_figures", "offline_frame_scores",
    "online_figures", "replay_config", "run_replay", "video_inputs",
]


# UCF-Crime's anomaly classes and the phrase each is matched by ("a video of <phrase>").
UCF_CLASSES = ("Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents", "Robbery",
               "Shooting", "Shoplifting", "Stealing", "Vandalism")
_CLASS_PHRASES = {"RoadAccidents": "a road accident", "Shoplifting": "shoplifting in a store"}


def explanation_class_hits(videos: Sequence[VideoReplay], encoder: TextEncoder) -> dict[str, Any]:
    """How often an alert's explanation names its video's class: among the alerts that overlap a GT span of an
    anomalous video, the share whose first explanation sentence is closest (by `encoder`) to "a video of
    <class>" of that video's UCF-Crime class. One measure for tools/explain_hits.py and tools/describe_quality.py."""
    class_emb = encoder.encode_texts([f"a video of {_CLASS_PHRASES.get(c, c.lower())}" for c in UCF_CLASSES])
    hits = total = 0
    for vr in videos:
        if not vr.gt.is_anomalous:
            continue
        spans = [(s / FPS, e / FPS) for s, e in vr.gt.spans]
        for a in vr.alerts:
            lo, hi = a.interval()
            if not a.explanation or not any(lo < e and s < hi for s, e in spans):
                continue
            total += 1
            hits += UCF_CLASSES[int(classify(encoder.encode_texts([a.explanation[0]]), class_emb)[0])] == vr.gt.cls
    return {"alerts": total, "hits": hits, "hit_rate": hits / total if total else float("nan")}
