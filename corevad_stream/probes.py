"""What `check` tries for real beyond the config: every part `run` will touch, each probe bounded in time.

Why probes and not only validation: a config can be valid and still fail the moment `run` starts (a camera
that does not resolve or answers 404, a broker that never sends CONNACK, a model server that is down or
refuses a request, an extra that is not installed, a store or state folder that cannot be written, an outbox
held by another monitor). Each finding is ok / warning / error with the config field it is about; probes
run concurrently and each has its own deadline, so `check` ends in about one timeout whatever is down.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import fcntl
import logging
import os
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from corevad.optional import MissingExtraError, require_installed
from corevad.threads import DaemonPool

from .config import CameraConfig, StreamConfig
from .preflight import problems
from .redact import redact

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class Level(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `check`'s report: how it went, the config item it is about, what was seen."""

    level: Level
    item: str
    message: str

    def line(self) -> str:
        return f"{self.level.value:<8}{self.item}: {redact(self.message)}"


def check_all(cfg: StreamConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Finding]:
    """Every finding for this config on this machine: the preflight problems, then each probe's."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    found = [_problem(p) for p in problems(cfg)]
    found += extras(cfg)
    found += storage(cfg)
    if any(f.level is Level.ERROR for f in found):
        # run stops at these before it opens a camera or a connection, so check does too (and stays fast).
        found.append(Finding(Level.WARNING, "probes", "cameras, broker and model server not tried: run would stop "
                             "at the error(s) above first"))
        return found
    probes: list[Callable[[], list[Finding]]] = [
        *(lambda i=i, cam=cam: [camera(i, cam, timeout_s=timeout_s)] for i, cam in enumerate(cfg.cameras)
          if cam.enabled),
        lambda: broker(cfg, timeout_s=timeout_s),
        lambda: model_server(cfg, timeout_s=timeout_s),
    ]
    # Daemon threads: a probe stuck past its own deadline is reported and left behind, never waited for
    # (a ThreadPoolExecutor's threads are joined at interpreter exit).
    pool = DaemonPool(min(16, len(probes)), name="corevad-check")
    futures = [pool.submit(p) for p in probes]
    deadline = time.monotonic() + timeout_s + 5.0
    for k, fut in enumerate(futures):
        try:
            found += fut.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            found.append(Finding(Level.ERROR, _probe_name(cfg, k), f"no answer within {timeout_s + 5:g} s"))
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a finding, not a traceback
            found.append(Finding(Level.ERROR, _probe_name(cfg, k), f"{type(exc).__name__}: {exc}"))
    pool.shutdown(wait=False, cancel_futures=True)
    return found


def _probe_name(cfg: StreamConfig, k: int) -> str:
    cams = [i for i, c in enumerate(cfg.cameras) if c.enabled]
    if k < len(cams):
        return f"cameras.{cams[k]}"
    return "mqtt" if k == len(cams) else "model"


def _problem(text: str) -> Finding:
    item, _, message = text.partition(": ")
    return Finding(Level.ERROR, item, message) if message else Finding(Level.ERROR, "config", text)


# -- optional packages ---------------------------------------------------------------------------------------
def extra_needs(cfg: StreamConfig) -> list[tuple[str, str, str, Level]]:
    """(module, what needs it, config item, level when missing) for the optional parts this config uses."""
    needs: list[tuple[str, str, str, Level]] = []
    model = cfg.model
    if model.tiny or model.vlm.backend == "transformers":
        what = "the tiny random models (--tiny-model)" if model.tiny else "the in-process transformers backend"
        item = "model.tiny" if model.tiny else "model.vlm.backend"
        needs += [(m, what, item, Level.ERROR) for m in ("torch", "transformers", "tokenizers")]
    if model.clip is not None and cfg.uses_features():
        # With use_features: auto, run falls back to scoring without CLIP (a warning there too).
        strict = any(cfg.camera_section(c, "refinement").use_features is True for c in cfg.enabled_cameras())
        needs += [(m, "CLIP features", "model.clip", Level.ERROR if strict else Level.WARNING)
                  for m in ("torch", "open_clip")]
    if cfg.uses_text_context():
        needs.append(("sentence_transformers", "the text-anchored context", "model.text", Level.ERROR))
    if cfg.mqtt is not None and cfg.mqtt.embedded_broker.enabled:
        needs.append(("amqtt", "the embedded MQTT broker", "mqtt.embedded_broker", Level.ERROR))
    if cfg.store.url is not None:
        needs += [(m, "the PostgreSQL event store", "store.url", Level.ERROR) for m in ("psycopg", "psycopg_pool")]
    return needs


def first_missing_extra(cfg: StreamConfig) -> MissingExtraError | None:
    """The first optional package this config needs for `run` that does not import (None: all there)."""
    for module, what, _item, level in extra_needs(cfg):
        if level is Level.ERROR:
            try:
                require_installed(module, what=what)
            except MissingExtraError as exc:
                return exc
    return None


def extras(cfg: StreamConfig) -> list[Finding]:
    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for module, what, item, level in extra_needs(cfg):
        if (module, item) in seen:
            continue
        seen.add((module, item))
        try:
            require_installed(module, what=what)
        except MissingExtraError as exc:
            found.append(Finding(level, item, str(exc)))
    return found


# -- where run writes ----------------------------------------------------------------------------------------
def _writable(folder: Path) -> str | None:
    """None when a file can be created (and removed) in folder; else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".corevad-check-", dir=folder)
        try:
            os.write(fd, b"x")  # no fsync: a full or read-only disk already says no here, a busy one stalls
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror or exc}"
    return None


def _sqlite_state(path: Path, table: str) -> tuple[str, int | None]:
    """('missing' | 'ok' | 'damaged: why', rows of `table` or None), read-only."""
    if not path.exists():
        return "missing", None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        return f"damaged: {exc}", None
    try:
        rows = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - our own table names
        return "ok", int(rows)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return "ok", 0
        return f"damaged: {exc}", None
    except sqlite3.DatabaseError as exc:
        return f"damaged: {exc}", None
    finally:
        db.close()


def storage(cfg: StreamConfig) -> list[Finding]:
    """The state folder, the event store and the MQTT outbox: writable, sound, not held by another monitor."""
    found: list[Finding] = []
    state = cfg.runtime.state_path()
    why = _writable(state)
    found.append(Finding(Level.ERROR, "runtime.state_dir", why) if why
                 else Finding(Level.OK, "runtime.state_dir", f"{state} is writable"))
    prefix = cfg.mqtt.prefix if cfg.mqtt is not None else "corevad"
    store = cfg.store.db_path(state, prefix)
    item = "store.path" if cfg.store.path is not None else "runtime.state_dir"
    if cfg.store.url is not None:
        found.append(_postgres_store(cfg, state, prefix))
    elif store.parent != state or not why:
        why_store = _writable(store.parent) if store.parent != state else None
        if why_store:
            found.append(Finding(Level.ERROR, item, f"event store {store}: {why_store}"))
        else:
            status, _ = _sqlite_state(store, "alerts")
            if status.startswith("damaged"):
                found.append(Finding(Level.WARNING, item, f"event store {store} is {status}; run sets it aside "
                                     "(renamed .bad-<time>) and starts a new one"))
            else:
                state_word = "new" if status == "missing" else "opens"
                found.append(Finding(Level.OK, item, f"event store {store} ({state_word})"))
    if cfg.mqtt is not None:
        found += _outbox(cfg.mqtt.outbox_path(state), "mqtt.outbox.path" if cfg.mqtt.outbox.path else
                         "runtime.state_dir")
    return found


def _postgres_store(cfg: StreamConfig, state: Path, prefix: str) -> Finding:
    """store.url: the password is there and the database answers (and at which schema version)."""
    from .security import SecretError

    try:
        at = cfg.store.location(state, prefix)
    except SecretError as exc:
        return Finding(Level.ERROR, "store.password", str(exc))
    try:
        import psycopg
    except ImportError:  # extras() reports the missing package
        return Finding(Level.WARNING, "store.url", "not tried: the postgres extra is not installed")
    try:
        with psycopg.connect(at.url or "", password=at.password, connect_timeout=5) as conn:
            row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
            version = (conn.execute("SELECT version FROM schema_version").fetchone() if row and row[0] else None)
    except psycopg.Error as exc:
        return Finding(Level.ERROR, "store.url", f"PostgreSQL {at.describe()}: {' '.join(str(exc).split())}")
    where = f"schema version {version[0]}" if version else "new: run creates the tables"
    return Finding(Level.OK, "store.url", f"PostgreSQL {at.describe()} answers ({where})")


def _outbox(path: Path, item: str) -> list[Finding]:
    why = _writable(path.parent)
    if why:
        return [Finding(Level.ERROR, item, f"MQTT outbox {path}: {why}")]
    lock = Path(f"{path}.lock")
    if lock.exists():
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError as exc:
            return [Finding(Level.ERROR, item, f"MQTT outbox lock {lock}: {exc.strerror or exc}")]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return [Finding(Level.ERROR, item, f"MQTT outbox {path} is in use by another process: another monitor "
                            "runs with this state directory (give each its own runtime.state_dir)")]
        finally:
            os.close(fd)
    status, rows = _sqlite_state(path, "outbox")
    if status.startswith("damaged"):
        return [Finding(Level.WARNING, item, f"MQTT outbox {path} is {status}; run sets it aside (renamed "
                        ".bad-<time>) keeping the messages that can be read")]
    if rows:
        return [Finding(Level.OK, item, f"MQTT outbox {path}: {rows} undelivered event(s) from an earlier run "
                        "will be sent first")]
    return [Finding(Level.OK, item, f"MQTT outbox {path} ({'new' if status == 'missing' else 'empty'})")]


# -- cameras -------------------------------------------------------------------------------------------------
def camera(index: int, cam: CameraConfig, *, timeout_s: float) -> Finding:
    """Open the camera as the source will and read one frame (frameless/sample: parse only)."""
    item = f"cameras.{index}"
    name = f"{cam.name} {cam.safe_url}"
    url = cam.url
    if url.startswith("frameless://"):
        from .config.cameras import frameless_spec

        try:
            n, fps = frameless_spec(url)
        except ValueError as exc:
            return Finding(Level.ERROR, f"{item}.url", f"{cam.safe_url}: {exc} (expected "
                           "frameless://[<frames>][?fps=<fps>])")
        return Finding(Level.OK, item, f"{name}: frameless, {'endless' if n is None else f'{n} frames'} at {fps:g} fps")
    if url.startswith("sample://"):
        return Finding(Level.OK, item, f"{name}: sample clip, generated on first use")
    if cam.is_file:
        path = url[len("file://"):] if url.startswith("file://") else url
        if not Path(path).is_file():
            return Finding(Level.ERROR, f"{item}.url", f"{cam.safe_url}: file not found")
    parsed = urlparse(url)
    if not cam.is_file and parsed.hostname:
        try:
            socket.getaddrinfo(parsed.hostname, parsed.port or None)
        except (socket.gaierror, UnicodeError) as exc:
            return Finding(Level.ERROR, f"{item}.url", f"{cam.safe_url}: cannot resolve host {parsed.hostname} "
                           f"({getattr(exc, 'strerror', None) or exc})")
        except OSError:
            pass
    return _read_one_frame(item, name, cam, timeout_s=timeout_s)


def _read_one_frame(item: str, name: str, cam: CameraConfig, *, timeout_s: float) -> Finding:
    import cv2

    from .sources import open_failure_cause

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    url = cam.url[len("file://"):] if cam.url.startswith("file://") else cam.url
    ms = int(timeout_s * 1000)
    t0 = time.monotonic()
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG,
                           [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    try:
        if not cap.isOpened():
            cause = "cannot open or decode the file" if cam.is_file else open_failure_cause(url, timeout_s)
            return Finding(Level.ERROR, f"{item}.url", f"{cam.safe_url}: {cause}")
        ok, frame = cap.read()
        if not ok or frame is None:
            return Finding(Level.ERROR, f"{item}.url", f"{cam.safe_url}: opened, but no frame within {timeout_s:g} s")
        h, w = frame.shape[:2]
        return Finding(Level.OK, item, f"{name}: one {w}x{h} frame read in {time.monotonic() - t0:.1f} s")
    finally:
        cap.release()


# -- MQTT ----------------------------------------------------------------------------------------------------
def broker(cfg: StreamConfig, *, timeout_s: float) -> list[Finding]:
    """Connect to the broker as run will (credentials, TLS) and wait for its CONNACK."""
    mqtt = cfg.mqtt
    if mqtt is None:
        return []
    eb = mqtt.embedded_broker
    if eb.enabled:
        from .broker import mqtt_broker_answers

        if eb.port and mqtt_broker_answers(eb.host, eb.port):
            return [Finding(Level.OK, "mqtt.embedded_broker", f"a broker already answers on {eb.host}:{eb.port}; "
                            "run publishes to it instead of starting its own")]
        return [Finding(Level.OK, "mqtt.embedded_broker", f"run starts its own broker on {eb.host}:{eb.port}")]
    where = f"broker {mqtt.host}:{mqtt.port}"
    try:
        asyncio.run(_connack(mqtt, timeout_s))
    except Exception as exc:  # noqa: BLE001 - every failure is the finding
        return [Finding(Level.ERROR, "mqtt", f"{where}: no CONNACK within {min(timeout_s, mqtt.connect_timeout_s):g} s "
                        f"({type(exc).__name__}: {exc})")]
    return [Finding(Level.OK, "mqtt", f"{where} accepted the connection (CONNACK)")]


async def _connack(mqtt: Any, timeout_s: float) -> None:
    import aiomqtt

    password = mqtt.password()
    limit = min(timeout_s, mqtt.connect_timeout_s)
    client = aiomqtt.Client(hostname=mqtt.host, port=mqtt.port, username=mqtt.username,
                            password=password.get_secret_value() if password else None,
                            tls_context=mqtt.tls.context() if mqtt.tls else None, timeout=limit,
                            # Never the monitor's own id: a check must not take over a running monitor's session.
                            identifier=f"corevad-check-{os.getpid()}")
    async with asyncio.timeout(limit + 1.0):
        async with client:
            pass


# -- the model server ----------------------------------------------------------------------------------------
def model_server(cfg: StreamConfig, *, timeout_s: float) -> list[Finding]:
    """openai backend: each replica's health (GET /models) and one 1-token answer."""
    vlm = cfg.model.vlm
    if cfg.model.tiny or vlm.backend != "openai":
        return []
    import httpx

    opts = vlm.openai
    headers = {"Content-Type": "application/json"}
    if opts.api_key_env and (key := os.environ.get(opts.api_key_env)):
        headers["Authorization"] = f"Bearer {key}"
    found: list[Finding] = []
    limit = httpx.Timeout(timeout_s, connect=min(timeout_s, opts.connect_timeout_s))
    body = {"model": opts.model, "messages": [{"role": "user", "content": "Answer with one word: ready?"}],
            "max_tokens": 1, "temperature": 0, "stream": False}
    with httpx.Client(headers=headers, timeout=limit) as client:
        for url in opts.urls:
            item = "model.vlm.openai.base_url"
            try:
                health = client.get(url + "/models")
                if health.status_code != 200:
                    found.append(Finding(Level.ERROR, item, f"{url}/models: HTTP {health.status_code}: "
                                         f"{health.text[:200]}"))
                    continue
                t0 = time.monotonic()
                answer = client.post(url + "/chat/completions", json=body)
            except httpx.HTTPError as exc:
                found.append(Finding(Level.ERROR, item, f"{url}: {type(exc).__name__}: {exc or 'no answer'}"))
                continue
            if answer.status_code != 200:
                found.append(Finding(Level.ERROR, item, f"{url}/chat/completions: HTTP {answer.status_code}: "
                                     f"{answer.text[:200]}"))
                continue
            try:
                answer.json()["choices"][0]["message"]
            except (ValueError, KeyError, IndexError, TypeError):
                found.append(Finding(Level.ERROR, item, f"{url}/chat/completions: not a completion: "
                                     f"{answer.text[:200]}"))
                continue
            found.append(Finding(Level.OK, item, f"{url}: healthy, a 1-token answer in "
                                 f"{time.monotonic() - t0:.1f} s (model {opts.model!r})"))
    return found
