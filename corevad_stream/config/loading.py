"""Reading configs: the YAML file (through corevad.files.read_yaml_mapping, the one YAML reader), overrides,
validation, and the shipped configs in the top-level configs/ folder.

One error convention: every problem is a ConfigError of one line, '<file>: <what is wrong>', naming the field
(the CLI prints it and exits 2); URLs in it are redacted.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from corevad.files import InputFileError, read_yaml_mapping

from ..errors import ConfigError
from ..redact import redact
from ._errors import validation_errors
from .stream import StreamConfig

__all__ = ["CONFIGS_PACKAGE", "config_from_dict", "load_config", "merge_mappings", "read_config_file",
           "shipped_config"]

# setuptools maps this package onto the checkout's top-level configs/ folder (pyproject.toml, package-dir),
# so the wheel carries the files users copy: example cameras, the demo, the replay protocols, the systemd unit.
CONFIGS_PACKAGE = "corevad_stream.configs"


def shipped_config(name: str) -> Path:
    """A file of configs/ (cameras.example.yaml, demo.yaml, replay_ucf.yaml, ...), from a wheel or a checkout.

    Read through importlib.resources. A checkout put on sys.path without installing it (PYTHONPATH=checkout)
    has no package mapping, so there the folder beside the packages is read: the same files either way.
    """
    root: Traversable
    try:
        root = resources.files(CONFIGS_PACKAGE)
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[2] / "configs"
        if not (checkout / "__init__.py").is_file():
            raise
        root = checkout
    return Path(str(root.joinpath(name)))


def merge_mappings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`, nested mappings key by key (config overrides)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """The YAML mapping of a config file, or one ConfigError line naming the file (size checked first, nesting
    bounded, YAML errors as 'line L, column C: problem')."""
    try:
        return read_yaml_mapping(path, what=what)
    except InputFileError as exc:
        raise ConfigError(redact(str(exc))) from None


def config_from_dict(data: dict[str, Any], *, source: str = "<config>") -> StreamConfig:
    """Validate a config mapping; every default lives in the schema (method defaults in corevad.params)."""
    try:
        return StreamConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config: {validation_errors(exc)}") from None


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> StreamConfig:
    """Read and validate a YAML config; errors name the file and the field (URLs redacted)."""
    data = read_config_file(path)
    if overrides:
        data = merge_mappings(data, overrides)
    return config_from_dict(data, source=str(path))
