"""Everything `run` needs from the machine, checked before anything starts: `check` == `run` minus starting.

Why: a config that passed `check` used to fail in `run` after the model had loaded (a password variable not
set, a camera file that does not exist, a port already taken), or with a traceback. Each problem here is one
line naming the field and the file, port or variable; `run` calls this before it loads a model.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from corevad.benchmarks import RESPONSES_LIMIT
from corevad.errors import CorevadError
from corevad.files import check_file
from corevad.prompt import load_prompt

from .broker import mqtt_broker_answers
from .config import StreamConfig
from .errors import ConfigError
from .redact import redact


def port_problem(host: str, port: int, *, option: str) -> str | None:
    """None when host:port can be bound now; otherwise what is wrong and which option to change."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{option}: port {port} on {host} is already in use; set {option} to a free port (0 = any)"
        return f"{option}: cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None


def problems(cfg: StreamConfig) -> list[str]:
    """Every problem `run` would hit with this config on this machine (empty: ready to run)."""
    found: list[str] = []

    def attempt(fn: object, field: str) -> None:
        try:
            fn()  # type: ignore[operator]
        except (ConfigError, CorevadError, OSError) as exc:
            msg = str(exc)
            found.append(msg if msg.startswith(field) else f"{field}: {msg}")

    # Secrets: every variable and file is read now, as run would.
    if cfg.metrics.enabled:
        attempt(cfg.metrics.password, "metrics")
    if cfg.mqtt is not None:
        attempt(cfg.mqtt.password, "mqtt")
        if cfg.mqtt.tls is not None:
            attempt(cfg.mqtt.tls.context, "mqtt.tls")
        if cfg.mqtt.embedded_broker.enabled:
            attempt(cfg.mqtt.embedded_broker.password, "mqtt.embedded_broker")
    # Files the cameras and the model read.
    for i, cam in enumerate(cfg.enabled_cameras()):
        if cam.is_file and not cam.url.startswith(("frameless://", "sample://")):
            path = cam.url[len("file://"):] if cam.url.startswith("file://") else cam.url
            attempt(lambda path=path: check_file(path, limit=1 << 62, what="video file"), f"cameras.{i}.url")
    vlm = cfg.model.vlm
    attempt(lambda: load_prompt(vlm.prompt_path), "model.vlm.prompt_path")
    if vlm.backend == "replay" and vlm.responses is not None:
        attempt(lambda: check_file(vlm.responses, limit=RESPONSES_LIMIT, what="responses file"),
                "model.vlm.responses")
    if vlm.backend == "transformers" and not cfg.model.tiny and _looks_local(vlm.model) and not Path(
            vlm.model).is_dir():
        found.append(f"model.vlm.model: local model folder {vlm.model} does not exist")
    # Ports the monitor listens on.
    if cfg.metrics.enabled:
        p = port_problem(cfg.metrics.host, cfg.metrics.port, option="metrics.port")
        if p:
            found.append(p)
    if cfg.mqtt is not None and cfg.mqtt.embedded_broker.enabled:
        eb = cfg.mqtt.embedded_broker
        p = port_problem(eb.host, eb.port, option="mqtt.embedded_broker.port")
        if p and not mqtt_broker_answers(eb.host, eb.port):  # a broker there is used instead (see MqttSink)
            found.append(p.replace("already in use", "already in use by something that is not an MQTT broker"))
    # Where run writes.
    state = cfg.runtime.state_path()
    attempt(lambda: state.mkdir(parents=True, exist_ok=True), "runtime.state_dir")
    if cfg.jsonl is not None and not cfg.jsonl.path.parent.is_dir():
        found.append(f"jsonl.path: folder {cfg.jsonl.path.parent} does not exist")
    return [redact(p) for p in found]


def preflight(cfg: StreamConfig, *, source: str) -> None:
    """Raise ConfigError listing every problem (one per line), or return when `run` can start."""
    found = problems(cfg)
    if len(found) == 1:
        raise ConfigError(f"{source}: {found[0]}")
    if found:
        raise ConfigError(f"{source}: {len(found)} problems:\n" + "\n".join(f"  {p}" for p in found))


def _looks_local(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or model.count("/") != 1 or Path(model).exists()
