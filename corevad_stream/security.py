"""The one loopback check and the one secrets reader of the runtime.

Why one home each: the loopback check guards every unauthenticated listener (metrics, the embedded broker,
the API), so it must resolve names instead of trusting a prefix ("127.0.0.1.evil.test" is not loopback);
secrets come only from an environment variable or a small file, never inline in the YAML, and a missing
one is a config error naming the field, found by `check` before anything starts.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

from pydantic import SecretStr

from corevad.files import InputFileError, read_text_checked

from .errors import ConfigError

MAX_SECRET_BYTES = 64 * 1024  # a password, key passphrase or token; anything larger is a wrong path


class SecretError(ConfigError):
    """A secret's environment variable is unset, or its file is missing, unreadable or not a small text file."""


def is_loopback(host: str) -> bool:
    """True when `host` is a loopback address, or a name that resolves only to loopback addresses.

    A name that does not resolve counts as not loopback: binding to it would fail or go elsewhere later.
    """
    host = host.strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addrs = {info[4][0] for info in infos}
    try:
        return bool(addrs) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)
    except ValueError:
        return False


def read_secret(*, env: str | None, file: Path | str | None, field: str) -> SecretStr | None:
    """A secret from a file (first line, stripped) or an environment variable; None when neither is given.

    Errors name the field and the variable or file, never the value.
    """
    if file is not None:
        try:
            text = read_text_checked(file, limit=MAX_SECRET_BYTES, what=f"{field}_file:")
        except InputFileError as exc:
            raise SecretError(str(exc)) from None
        return SecretStr(text.strip())
    if env is not None:
        env_value = os.environ.get(env)
        if env_value is None:
            raise SecretError(f"{field}_env: environment variable {env} is not set")
        return SecretStr(env_value)
    return None
