"""Credentials inside camera URLs never reach a log line or a message: redact them everywhere.

Camera passwords are typed by hand and often are not percent-encoded, so the user-info part may itself
hold '@', ':' or '/' ("rtsp://admin:p@ss/w0rd@cam/"): the credentials run up to the LAST '@' that is
followed by a host. When in doubt this redacts too much (a path with '@'), never too little.
"""

from __future__ import annotations

import logging
import re

# scheme://<user-info>@host -> scheme://***@host, host = name, IPv4 or [IPv6] with an optional port, then the end
# of the authority. The user-info is greedy (the LAST '@' that is followed by a host wins: "p@ss/w0rd@cam") and may
# hold spaces (a typed password "my pass"); it never runs past a line end, a double quote (the end of a JSON
# string) or the next "scheme://" (the next URL on the line).
_HOST = r"(?=(?:\[[0-9A-Fa-f:.%\w]*\]|[\w.\-]+)(?::\d*)?(?:[/?#\s'\"),;\]}>]|$))"
# The scheme starts where a word starts (the lookbehind keeps a long run of letters linear, not quadratic).
_SCHEME = r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)"
_CRED_RE = re.compile(_SCHEME + r"(?P<cred>(?:(?!://)[^\r\n\"])*)@" + _HOST)
# A user-info holding a double quote (no other delimiter reaches its '@'): up to the first '@' without spaces.
_CRED_FALLBACK_RE = re.compile(_SCHEME + r"(?P<cred>\S*?)@" + _HOST)
# Query parameters whose name looks like a secret (?password=, &pw=, &apikey=, &access_token=, &X-Signature=).
_SECRET_WORDS = r"pw|pwd|pass|passwd|password|key|apikey|token|secret|auth|signature|sig|credential|session"
_QUERY_RE = re.compile(
    rf"(?P<key>[?&;](?:[\w.\-]*?(?:{_SECRET_WORDS})[\w.\-]*)=)(?P<value>[^&;#\s'\"]*)", re.IGNORECASE
)


def redact(text: str) -> str:
    """Replace the user-info of every URL inside text (and secret-looking query values) with ***."""
    for pattern in (_CRED_RE, _CRED_FALLBACK_RE):  # idempotent: "***" holds no '@'
        text = pattern.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _QUERY_RE.sub(lambda m: f"{m.group('key')}***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the fully formatted message (args included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not kill logging
            return True
        red = redact(msg)
        if red != msg or record.args:
            record.msg, record.args = red, None
        if record.exc_info and not record.exc_text:
            # Format the traceback now so its text (exception messages with URLs) is redacted too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of the root logger (handlers see records from all loggers)."""
    root = logger or logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
