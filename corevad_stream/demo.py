"""`corevad-stream demo`: real InternVL2-8B answers replayed as live cameras, with no GPU and no weights.

Why: with tiny random models every answer is unparsed and nothing ever alerts, so a new user could not see
what the monitor does. The CoReVAD authors published the answers InternVL2-8B gave for every UCF-Crime test
video (one per 30-frame segment); each chosen video becomes a camera whose segments the replay backend
answers, paced at real time (or --speed times faster) through the whole runtime: scoring, alerts with
explanations, MQTT, the live view and metrics. Frames are not decoded (the answers are recorded), so the
frame path is not exercised: `--tiny-model` with a video camera does that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corevad.benchmarks import load_responses
from corevad.paths import state_dir

from .broker import mqtt_broker_answers
from .errors import ConfigError

# UCF-Crime test videos whose recorded answers raise an alert after the ground-truth onset, 44-60 s long.
DEFAULT_VIDEOS = ("Explosion020_x264", "Shooting018_x264", "RoadAccidents124_x264", "Robbery048_x264")
# The demo's own MQTT namespace and state (event store, open-alert record, outbox), so its alerts never land in
# the history, page or topics of a real monitor on the same machine (which default to prefix `corevad` and the
# state directory itself).
DEMO_PREFIX = "corevad-demo"
PUBLIC_ANSWERS = ("VLM_responses_LRC_ucf.json: the CoReVAD authors' recorded InternVL2-8B answers for "
                  "UCF-Crime (their public repository); this project keeps a copy in ../shared/data/ucf_crime/")


def find_responses(given: Path | None) -> Path:
    """--responses, else the public file in ../shared/data next to the checkout or the working directory."""
    if given is not None:
        return given
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        for cand in (base / "shared" / "data", base.parent / "shared" / "data"):
            p = cand / "ucf_crime" / "VLM_responses_LRC_ucf.json"
            if p.is_file():
                return p
    raise ConfigError(f"demo: no recorded answers found; give --responses PATH to {PUBLIC_ANSWERS}")


def demo_state_dir() -> Path:
    """Where the demo keeps its event store, open-alert record and outbox: `demo/` inside the state directory."""
    return state_dir() / "demo"


def demo_config(responses: Path, videos: list[str], *, speed: float, mqtt_host: str, mqtt_port: int,
                prefix: str, text_context: bool, metrics_port: int,
                state: Path | None = None) -> tuple[dict[str, Any], str]:
    """The run config of the demo and one line saying which MQTT broker it uses.

    state: the demo's state directory (default demo_state_dir()); its history lives there and nowhere else."""
    if not 0.1 <= speed <= 100:
        raise ConfigError(f"demo: --speed {speed:g} must be between 0.1 and 100")
    answers = load_responses(responses)
    missing = [v for v in videos if v not in answers]
    if missing:
        raise ConfigError(f"demo: {responses} has no answers for {', '.join(missing)}")
    # One camera per video: frame-less segments at 30 fps x speed, 1/speed s each -> 30 frames a segment.
    cameras = [{"name": v, "url": f"frameless://{30 * len(answers[v])}?fps={30 * speed:g}", "rate": "native"}
               for v in videos]
    embedded = not mqtt_broker_answers(mqtt_host, mqtt_port)
    how = (f"starting the embedded MQTT broker on {mqtt_host}:{mqtt_port}" if embedded
           else f"using the MQTT broker already answering on {mqtt_host}:{mqtt_port}")
    state = state or demo_state_dir()
    # The outbox path is given, not left to its default: that one follows the prefix inside the shared state
    # directory, and a demo run with the real monitor's prefix must still not touch the real outbox.
    mqtt: dict[str, Any] = {"host": mqtt_host, "port": mqtt_port, "prefix": prefix,
                            "outbox": {"path": str(state / f"mqtt-outbox-{prefix.replace('/', '-')}.sqlite3")}}
    if embedded:
        mqtt["embedded_broker"] = {"enabled": True, "host": mqtt_host, "port": mqtt_port}
    cfg = {
        "cameras": cameras,
        "model": {"vlm": {"backend": "replay", "responses": str(responses)}, "clip": None},
        "refinement": {"text_context": text_context},
        "mqtt": mqtt,
        "metrics": {"port": metrics_port},
        "runtime": {"segment_seconds": round(1.0 / speed, 6), "stats_interval_s": max(1.0, 10.0 / speed),
                    "state_dir": str(state)},
        # Alert timings are in stream seconds: scaled with the pace, they behave as at real time.
        "alerts": {"snapshot": False},
    }
    return cfg, how


def have_text_encoder() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True
