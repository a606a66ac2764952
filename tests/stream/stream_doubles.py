"""Config helpers for the runtime tests; the model doubles live in corevad_stream.testing.doubles (tools share them)."""

from __future__ import annotations

from typing import Any

from corevad_stream.camera import CameraPipeline
from corevad_stream.config import StreamConfig, config_from_dict
from corevad_stream.entities import CameraCounters
from corevad_stream.ring import FrameRing
from corevad_stream.scoring import CameraScoring
from corevad_stream.testing.doubles import ANOMALOUS, GARBLED, NORMAL, HashEncoder, ScriptedBackend

__all__ = ["ANOMALOUS", "GARBLED", "NORMAL", "HashEncoder", "ScriptedBackend", "stream_config"]


def stream_config(cameras: list[dict[str, Any]], **sections: Any) -> StreamConfig:
    """A test config: no metrics port, small frames, quick reconnects (override any section)."""
    base: dict[str, Any] = {
        "cameras": cameras,
        "metrics": {"enabled": False},
        "alerts": {"snapshot": False},
        "runtime": {"frame_size": 32, "max_wait_s": 0.0, "stats_interval_s": 1.0,
                    "reconnect": {"initial_s": 0.2, "max_s": 1.0, "open_timeout_s": 5, "stall_timeout_s": 3}},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(base)


def store_section(at: Any) -> dict[str, str]:
    """The `store` config section for a StoreLocation (the store_at fixture), as users write it: a sqlite path,
    or a PostgreSQL URL with the password in an environment variable."""
    if at.path is not None:
        return {"path": str(at.path)}
    return {"url": at.url, "password_env": "COREVAD_TEST_PG_PASSWORD"}


def camera_pipeline(name: str = "c", *, ring: FrameRing | None = None, **sections: Any) -> CameraPipeline:
    """One frame-less camera's pipeline with real scoring, outside any App (sections as for stream_config)."""
    cfg = stream_config([{"name": name, "url": "frameless://"}], **sections)
    cam_cfg = cfg.cameras[0]
    alerts, refinement = cfg.camera_section(cam_cfg, "alerts"), cfg.camera_section(cam_cfg, "refinement")
    counters = CameraCounters()
    scoring = CameraScoring(name, params=refinement.params(), alerts=alerts.params(), use_features=False,
                            counters=counters, run_id="r")
    return CameraPipeline(cam_cfg, counters=counters, scoring=scoring, ring=ring, results_bound=4,
                          down_after_s=30.0, alerts=alerts, refinement=refinement)
