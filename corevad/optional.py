"""Optional dependencies: import them where used, and say which extra installs them when they are missing.

The base install (replay and OpenAI-compatible backends, MQTT, metrics, eval) has no torch; in-process
models, the sentence encoder, the embedded broker and plots come with extras.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from .errors import CorevadError

EXTRAS = {
    "torch": "local", "torchvision": "local", "transformers": "local", "open_clip": "local", "tokenizers": "local",
    "sentence_transformers": "text", "amqtt": "broker", "pwdlib": "broker", "matplotlib": "plots",
}


class MissingExtraError(CorevadError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module: str, *, what: str) -> ModuleType:
    """import_module(module), or MissingExtraError("<what> needs <module>: pip install 'corevad[<extra>]'")."""
    try:
        return import_module(module)
    except ImportError as exc:
        raise _missing(module, what) from exc


def require_installed(module: str, *, what: str) -> None:
    """Like require() without importing (seconds for torch): MissingExtraError when `module` cannot be found."""
    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise _missing(module, what)


def _missing(module: str, what: str) -> MissingExtraError:
    top = module.split(".")[0]
    extra = EXTRAS.get(top, "all")
    return MissingExtraError(f"{what} needs the optional package {top!r}, which is not installed: "
                             f"pip install 'corevad[{extra}]'")
