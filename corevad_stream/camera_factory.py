"""Build one camera's pipeline from its config: frame ring, segmenter, scoring, source (wiring only).

Why apart from the app: the app adds cameras at start and at run time through this one function, and this
is the only place the camera's config sections (the global `alerts` / `refinement` with the camera's
overrides) are merged and validated: the pipeline keeps the resolved sections.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from corevad.models.base import ImageTextEncoder
from corevad.models.text import TextEncoder
from corevad.prompt import camera_prompt

from .batcher import Batcher
from .camera import CameraPipeline
from .config import CameraConfig, StreamConfig
from .config.cameras import FRAMELESS_SCHEME
from .entities import CameraCounters, OverloadPolicy, Source, StatusCallback, StatusChange
from .ring import FrameRing
from .scoring import CameraScoring
from .segmenter import Segmenter
from .sources import FramelessSource, VideoSource
from .zones import CameraZones

SourceFactory = Callable[[CameraConfig, Segmenter, CameraCounters, StatusCallback], Source]


def build_camera(cfg: StreamConfig, cam_cfg: CameraConfig, *, batcher: Batcher, loop: asyncio.AbstractEventLoop,
                 run_id: str, encoder: ImageTextEncoder | None, text_encoder: TextEncoder | None,
                 support: Callable[[np.ndarray], float] | None, source_factory: SourceFactory | None,
                 on_status: Callable[[CameraPipeline, StatusChange], None],
                 prompt_template: str | None = None) -> CameraPipeline:
    """One camera's parts, registered with the batcher; its config sections are resolved here, once.
    on_status is called from the source thread. prompt_template: the backend's template (None: it has none,
    e.g. replayed answers), shown with the camera's context in /api/cameras."""
    rt = cfg.runtime
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
    use_features = bool(refinement.use_features) and encoder is not None and not frameless
    text_context = refinement.text_context and text_encoder is not None and not use_features
    counters = CameraCounters()
    zones = CameraZones(cam_cfg.name, cam_cfg.zones) if cam_cfg.zones else None
    scoring = CameraScoring(cam_cfg.name, params=refinement.params(), alerts=alerts.params(),
                            use_features=use_features, lrc=refinement.lrc, counters=counters,
                            top_k=alerts.explanation_top_k, run_id=run_id, text_context=text_context,
                            support=support if alerts.rank_explanations else None,
                            use_probability=refinement.segment_score == "p_anomalous")
    cam = CameraPipeline(cam_cfg, counters=counters, scoring=scoring, ring=ring, alerts=alerts,
                         refinement=refinement, results_bound=2 * rt.max_batch,
                         down_after_s=rt.model_down_after_s, zones=zones)
    if isinstance(prompt_template, str):
        cam.prompt = camera_prompt(prompt_template, cam_cfg.context, rt.frames_per_segment)
    policy = cfg.policy_for(cam_cfg)
    batcher.add_camera(cam.name, policy)
    segmenter = Segmenter(cam.name, ring=ring, frames_per_segment=rt.frames_per_segment,
                          emit=functools.partial(cam.admit, submit=batcher.submit),
                          on_no_slot=functools.partial(soon, loop, cam.lost_no_slot),
                          segment_seconds=rt.segment_seconds, keep_full_frame=alerts.snapshot and not frameless,
                          lossless=policy is OverloadPolicy.BLOCK, context=cam_cfg.context, zones=zones)

    def status(change: StatusChange) -> None:
        on_status(cam, change)

    if source_factory is not None:
        cam.source = source_factory(cam_cfg, segmenter, counters, status)
    elif frameless:
        cam.source = FramelessSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=status,
                                     restart=rt.reconnect.policy())
    else:
        cam.source = VideoSource(cam_cfg, segmenter=segmenter, counters=counters, on_status=status,
                                 reconnect=rt.reconnect)
    # The source thread is done: its end marker queues behind its segments.
    cam.source.on_exit = functools.partial(soon, loop, batcher.end_of_stream, cam.name)
    return cam


def soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run fn(*args) on the loop, from any thread (the source thread's callbacks)."""
    loop.call_soon_threadsafe(fn, *args)


def resolve_sample(cam: CameraConfig) -> CameraConfig:
    """sample://<name> -> the generated clip's path (made on first use; blocking)."""
    if not cam.url.startswith("sample://"):
        return cam
    from .sample import ensure_sample_clip

    return cam.model_copy(update={"url": str(ensure_sample_clip(cam.url[len("sample://"):] or "demo"))})
