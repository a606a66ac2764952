"""An embedded in-process MQTT broker (amqtt) so a first run needs nothing else; loopback unless secured.

amqtt is a pure-asyncio MQTT 3.1.1 broker: fine for a demo or a single-machine setup, not a replacement for
Mosquitto in production (no bridging, persistence or ACLs configured here). Binding it to any address other
than loopback exposes the camera alerts to the network, so that requires a username and password and the
broker then refuses anonymous clients; this is enforced both when the config is validated and at start().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from pydantic import SecretStr

from .config.mqtt import EmbeddedBrokerConfig as EmbeddedBrokerConfig  # the schema's; imported from here too
from .errors import StreamError
from .security import is_loopback

log = logging.getLogger(__name__)


class BrokerError(StreamError):
    """The embedded broker cannot start as configured (exposure without credentials, port in use, ...)."""


class EmbeddedBroker:
    """amqtt broker run in this event loop. `async with EmbeddedBroker(...) as broker:` or start()/stop().

    With username/password, only that user may connect (argon2-hashed password file in a private temp
    dir, removed at stop); without, anonymous clients are allowed, and only on loopback.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: SecretStr | str | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise BrokerError("embedded broker: give both username and password, or neither")
        if not is_loopback(host) and username is None:
            raise BrokerError(f"embedded broker: refusing to bind {host!r} without credentials (anonymous "
                              "clients are only allowed on loopback)")
        if not 0 <= port <= 65535:
            raise BrokerError(f"embedded broker: port {port} out of range")
        self.host = host
        self.port = port or _free_port(host)
        self.username = username
        self._password = password if isinstance(password, SecretStr) or password is None else SecretStr(password)
        self._broker: object | None = None
        self._tmpdir: Path | None = None

    @classmethod
    def from_config(cls, config: EmbeddedBrokerConfig) -> EmbeddedBroker:
        return cls(host=config.host, port=config.port, username=config.username, password=config.password())

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        from corevad.optional import require

        Broker = require("amqtt.broker", what="the embedded MQTT broker").Broker  # noqa: N806 - a class

        if self._broker is not None:
            return
        plugins: dict[str, dict[str, object]]
        if self.username is None:
            plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        else:
            plugins = {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": self._password_file()}}
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{_bind_host(self.host)}:{self.port}"}},
            "plugins": plugins,
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:
            self._cleanup()
            raise BrokerError(f"embedded broker could not listen on {self.host}:{self.port}: {exc}") from exc
        self._broker = broker
        log.info("embedded MQTT broker (amqtt) listening on %s:%d%s", self.host, self.port,
                 f", user {self.username!r} only" if self.username else ", anonymous (loopback only)")

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            try:
                await asyncio.wait_for(broker.shutdown(), 10)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - shutting down anyway; report, do not mask the caller
                log.warning("embedded broker shutdown: %s", exc)
        self._cleanup()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _password_file(self) -> str:
        from corevad.optional import require

        PasswordHash = require("pwdlib", what="the embedded broker's password file").PasswordHash  # noqa: N806
        Argon2Hasher = require("pwdlib.hashers.argon2", what="the embedded broker's password file").Argon2Hasher  # noqa: N806

        assert self._password is not None and self.username is not None
        if ":" in self.username:
            raise BrokerError("embedded broker: username must not contain ':'")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="corevad-broker-"))  # mode 0700
        path = self._tmpdir / "passwd"
        digest = PasswordHash((Argon2Hasher(),)).hash(self._password.get_secret_value())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{self.username}:{digest}\n")
        return str(path)

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def mqtt_broker_answers(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """Whether an MQTT broker answers on host:port: an MQTT 3.1.1 CONNECT gets a CONNACK (any return code:
    a broker that refuses anonymous clients is still a broker). Another service on the port is not one."""
    connect = (b"\x10\x14" b"\x00\x04MQTT\x04\x02\x00\x05" b"\x00\x08corevad?")  # clean session, keepalive 5 s
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            sock.sendall(connect)
            reply = sock.recv(4)
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return len(reply) >= 2 and reply[0] == 0x20 and reply[1] == 0x02


def dial_host(host: str) -> str:
    """Where a client on this machine connects to a broker listening on `host`: a wildcard listen address
    (0.0.0.0, ::, empty) is reached on loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
