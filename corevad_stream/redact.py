"""Credentials inside camera URLs never reach a log line or a message: redact them everywhere."""

from __future__ import annotations

import logging
import re

# scheme://user:password@host or scheme://user@host -> scheme://***@host (also inside longer text).
_CRED_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<cred>[^/@\s:]+(?::[^/@\s]*)?)@")
# Query parameters that commonly carry secrets (?password=..., &token=...).
_QUERY_RE = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|pass|token|auth|key|secret)=)[^&\s]*", re.I)


def redact(text: str) -> str:
    """Replace user:password in every URL inside text (and secret-looking query values) with ***."""
    text = _CRED_RE.sub(lambda m: f"{m.group('scheme')}***@", text)
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
