"""The one secret reference: a user and a password named by an environment variable or a file, never inline.

Every section with credentials (metrics, mqtt, mqtt.embedded_broker) uses SecretRef, so the checks are the
same everywhere: one source of the password at most, and no password without a user. Each section adds its
own rule on top (metrics and the embedded broker off loopback need both). The reader is
corevad_stream.security.read_secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from corevad.schema import StrictModel

from ..security import read_secret

__all__ = ["SecretRef", "one_secret_source"]


def one_secret_source(env: str | None, file: Path | None, *, field: str) -> None:
    """ValueError when a secret is given both ways (which one would win is not obvious to the reader)."""
    if env and file:
        raise ValueError(f"{field}: give {field}_env or {field}_file, not both")


class SecretRef(StrictModel):
    """username + password_env | password_file (flat keys, as users write them in each section)."""

    # The dotted name of the password in error messages (metrics.password, mqtt.password, ...).
    secret_field: ClassVar[str] = "password"

    username: str | None = Field(None, min_length=1, description="User name.")
    password_env: str | None = Field(None, min_length=1, description="Environment variable holding the password.")
    password_file: Path | None = Field(None, description="File holding the password (first line).")

    @property
    def has_password(self) -> bool:
        return bool(self.password_env or self.password_file)

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        one_secret_source(self.password_env, self.password_file, field=self.secret_field)
        if self.has_password and not self.username:
            raise ValueError(f"{self.secret_field}_env/{self.secret_field}_file need a username")
        return self

    def password(self) -> SecretStr | None:
        """Read the password now (SecretError naming the field when its variable or file is missing)."""
        return read_secret(env=self.password_env, file=self.password_file, field=self.secret_field)
