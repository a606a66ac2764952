"""Real outside services for tests and benchmarks: Mosquitto, a GStreamer RTSP camera, `transformers serve`.

Each service is a child process on a free loopback port that can be stopped, killed and restarted on the
same port (so URLs held by the code under test stay valid across the outage). Nothing here fakes a
protocol: the tests talk to the real programs the README tells operators to run. MqttCollector is a real
aiomqtt subscriber that records what a broker delivers.

The RTSP camera runs tools/rtsp_server.py, so RtspServer needs a source checkout (or script=).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from ..broker import _free_port

# tools/rtsp_server.py of the checkout this package runs from (the script is not part of a wheel).
RTSP_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # python3-gi (GstRtspServer) lives here, not in the venv
LOOPBACK = "127.0.0.1"

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A test service could not be started or did not become ready; the message carries its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the OS picks it): the embedded broker's own port picker, so
    the runtime, the tests and the tools share one."""
    return _free_port(host)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Poll predicate until it returns something truthy (returned) or raise TimeoutError after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what or predicate!r}")
        time.sleep(interval)


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if path is None:
        raise ServiceError(f"{binary} not found: install the Debian package {package} (tools/setup.sh does)")
    return path


class _Process:
    """A child process with a log file, started in its own session so signals reach only it."""

    name = "service"

    def __init__(self, workdir: Path, host: str, port: int | None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- subclass hooks
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return port_open(self.host, self.port)

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        """The child in its own session (signals reach only it), its output in the log."""
        return subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                start_new_session=True)

    # -- lifecycle
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> None:
        """Start (or start again, on the same port) and wait until it accepts connections."""
        if self.running:
            return
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "ab") as log:
                self.proc = self._spawn(log)
            try:
                while not self._ready():
                    if self.proc.poll() is not None:
                        break  # died: maybe the port is still held by the previous run; retry below
                    if time.monotonic() > deadline:
                        raise TimeoutError
                    time.sleep(0.05)
                else:
                    self.starts += 1
                    return
            except TimeoutError:
                self.kill()
                raise ServiceError(
                    f"{self.name} on {self.host}:{self.port} not ready after {timeout:.0f}s; log:\n"
                    f"{self.log_text()[-3000:]}"
                ) from None
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} on {self.host}:{self.port} exited with {self.proc.returncode}; log:\n"
                    f"{self.log_text()[-3000:]}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL after timeout seconds."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_port_closed()

    def kill(self) -> None:
        """Abrupt death (SIGKILL): no goodbye to clients, no state saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._wait_port_closed()

    def restart(self, timeout: float = 20.0) -> None:
        self.stop()
        self.start(timeout)

    def _wait_port_closed(self) -> None:
        try:
            wait_until(lambda: not port_open(self.host, self.port), timeout=5, what=f"{self.name} port close")
        except TimeoutError:
            pass

    def __enter__(self: T) -> T:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class TransformersServe(_Process):
    """`transformers serve MODEL_DIR` (OpenAI-compatible, CPU) on a loopback port; .url is its /v1 root."""

    name = "transformers-serve"

    def __init__(self, workdir: Path, model_dir: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        super().__init__(workdir, host, port)
        self.model_dir = model_dir

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _command(self) -> list[str]:
        exe = Path(sys.executable).with_name("transformers")
        return [str(exe if exe.exists() else _need("transformers", "transformers[serving]")), "serve",
                str(self.model_dir), "--host", self.host, "--port", str(self.port), "--device", "cpu"]

    def _ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False


class Mosquitto(_Process):
    """A real Mosquitto 2 broker on a loopback port; optional username/password (then anonymous is refused).

    persistence=True keeps retained messages and persistent sessions (clean_session=False subscribers)
    across a graceful stop()/restart(), as a production broker would.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        persistence: bool = True,
        tls: bool = False,
        extra_config: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir, host, port)
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.binary = _need("mosquitto", "mosquitto")
        self.username = username
        self.password = password
        self.persistence = persistence
        self.ca_file: Path | None = make_test_ca(self.workdir / "tls", self.host) if tls else None
        self.extra_config = list(extra_config)  # raw mosquitto.conf lines, e.g. "set_tcp_nodelay true"
        self.conf_path = self.workdir / "mosquitto.conf"
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"user {getpass.getuser()}",  # started as root it would otherwise drop to 'mosquitto'
            f"log_dest file {self.workdir / 'mosquitto.broker.log'}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        lines += self.extra_config
        if self.ca_file is not None:
            tls_dir = self.ca_file.parent
            lines += [f"cafile {self.ca_file}", f"certfile {tls_dir / 'server.crt'}",
                      f"keyfile {tls_dir / 'server.key'}"]
        if self.username is not None:
            passwd = self.workdir / "passwd"
            passwd.unlink(missing_ok=True)
            subprocess.run(
                [_need("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwd), self.username,
                 str(self.password)],
                check=True, capture_output=True,
            )
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    def log_text(self) -> str:
        broker_log = self.workdir / "mosquitto.broker.log"
        text = super().log_text()
        if broker_log.exists():
            text += broker_log.read_text(errors="replace")
        return text

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def make_test_ca(directory: Path, host: str) -> Path:
    """A throwaway CA and a server certificate for `host` (IP SAN) made with the openssl CLI; returns ca.crt."""
    openssl = _need("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=corevad test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}")
    (directory / "san.ext").write_text(f"subjectAltName=IP:{host}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return directory / "ca.crt"


class RtspServer(_Process):
    """tools/rtsp_server.py under /usr/bin/python3: a live H.264 RTSP camera serving a looped file or a
    test pattern at rtsp://127.0.0.1:PORT/MOUNT. stop()/kill() + start() keep the same URL."""

    name = "rtsp_server"

    def __init__(
        self,
        workdir: Path,
        *,
        file: Path | str | None = None,
        testsrc: bool = False,
        size: tuple[int, int] = (640, 480),
        fps: float | None = None,
        mount: str = "/cam",
        host: str = LOOPBACK,
        port: int | None = None,
        script: Path | None = None,
    ) -> None:
        super().__init__(workdir, host, port)
        self.script = Path(script) if script is not None else RTSP_SCRIPT
        if not self.script.is_file():
            raise ServiceError(f"RTSP server script {self.script} not found: RtspServer needs a source checkout "
                               "(tools/rtsp_server.py) or script=")
        if (file is None) == (not testsrc):
            raise ValueError("give exactly one of file= or testsrc=True")
        _need(SYSTEM_PYTHON, "python3-gi gir1.2-gst-rtsp-server-1.0")
        if file is not None and not Path(file).is_file():
            raise ValueError(f"RTSP server video not found: {file}")
        self.file = Path(file) if file is not None else None
        self.size = size
        self.fps = fps
        self.mount = mount if mount.startswith("/") else "/" + mount

    def _command(self) -> list[str]:
        cmd = [SYSTEM_PYTHON, str(self.script), "--host", self.host, "--port", str(self.port),
               "--mount", self.mount]
        if self.file is not None:
            cmd += ["--file", str(self.file)]
        else:
            cmd += ["--testsrc", "--size", f"{self.size[0]}x{self.size[1]}"]
        if self.fps is not None:
            cmd += ["--fps", str(self.fps)]
        return cmd

    def _ready(self) -> bool:
        # READY is printed after the server socket is attached; counting lines tells restarts apart.
        return self.log_text().count("READY rtsp://") > self.starts and port_open(self.host, self.port)

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}{self.mount}"


@dataclass(frozen=True, slots=True)
class Received:
    """One message seen by an MqttCollector; at = time.perf_counter() on arrival."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttCollector:
    """A real aiomqtt subscriber running in the background that records every message it receives.

    It reconnects by itself when the broker goes away; with persistent=True (clean_session=False and a
    fixed client id) the broker queues QoS>=1 messages for it while it is away, so a test can count on
    seeing everything published across a broker restart (Mosquitto with persistence on).

        async with MqttCollector(broker.host, broker.port, ["corevad/#"]) as sub:
            ...
            await sub.wait_for(lambda msgs: len(sub.on("corevad/events")) >= 3, timeout=30)
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str] | tuple[str, ...] = ("#",),
        *,
        qos: int = 1,
        persistent: bool = True,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.topics, self.qos = host, port, list(topics), qos
        self.persistent = persistent
        self.client_id = client_id or f"test-collector-{os.getpid()}-{id(self):x}"
        self.username, self.password = username, password
        self.messages: list[Received] = []
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> MqttCollector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 20.0) -> None:
        self._task = asyncio.create_task(self._run(), name="test.mqtt-collector")
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id,
                                          clean_session=not self.persistent, timeout=10,
                                          username=self.username, password=self.password) as client:
                    self.connects += 1
                    for topic in self.topics:
                        await client.subscribe(topic, qos=self.qos)
                    self._subscribed.set()
                    async for m in client.messages:
                        self.messages.append(Received(str(m.topic), bytes(m.payload),
                                                      bool(m.retain), int(m.qos), time.perf_counter()))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def seen_topics(self) -> list[str]:
        """Every topic seen, in order of first arrival."""
        return list(dict.fromkeys(m.topic for m in self.messages))

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.on(topic)]

    async def wait_for(self, predicate: Callable[[], object], *, timeout: float, what: str = "") -> None:
        """Poll predicate() every 10 ms; raise TimeoutError (listing what was received) after timeout s."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            seen = "\n".join(f"  {m.topic} {m.payload[:80]!r}" for m in self.messages[-30:])
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate!r}; last "
                               f"messages:\n{seen}") from None
