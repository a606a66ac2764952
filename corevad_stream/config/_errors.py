"""How a pydantic ValidationError reads to a user: 'field.path: problem; ...' on one line, URLs redacted."""

from __future__ import annotations

from pydantic import ValidationError

from ..redact import redact


def validation_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = " ".join(redact(str(err["msg"])).removeprefix("Value error, ").split())
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
