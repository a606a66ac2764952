"""Files in and out: the user's text files read safely, and outputs written atomically.

Why one reader: a 500 MB file given as a prompt or responses file was read whole (1 GB RSS) before any
check; a binary or empty prompt gave a traceback. Every text input of both packages goes through here and
fails with one line naming the file and what is wrong with it.

Why atomic writes: the offline pipelines are resumable and an interrupted run is normal (Ctrl-C, a killed
job); each output is written to a temporary name in its folder, fsynced, then moved into place, so a reader
(or the next run) never sees a torn file.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import DataError

KIB = 1024
MIB = 1024 * KIB
# Deeper YAML is refused before PyYAML's recursive composer overflows the stack (a file nested 10,000 deep
# was a RecursionError traceback); no config of ours nests past 6.
MAX_YAML_DEPTH = 64


class InputFileError(DataError):
    """A user-supplied file is missing, not a regular file, too large, empty or not UTF-8 text."""


def read_text_checked(path: str | Path, *, limit: int, what: str, allow_empty: bool = False) -> str:
    """The file's UTF-8 text; InputFileError (naming `what` and the file) for anything else."""
    p = check_file(path, limit=limit, what=what)
    try:
        with p.open("rb") as fh:
            data = fh.read(limit + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise InputFileError(f"{what} {p}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputFileError(f"{what} {p} is over the limit of {limit:,} bytes")
    if b"\x00" in data:
        raise InputFileError(f"{what} {p} is a binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} {p} is not UTF-8 text (byte {exc.start})") from None
    if not allow_empty and not text.strip():
        raise InputFileError(f"{what} {p} is empty")
    return text


def check_file(path: str | Path, *, limit: int, what: str) -> Path:
    """Stat-only check that a file exists, is a regular file and is not over `limit` bytes (nothing is read)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputFileError(f"{what} {p} does not exist") from None
    except OSError as exc:
        raise InputFileError(f"{what} {p}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{what} {p} is not a regular file")
    if st.st_size > limit:
        raise InputFileError(f"{what} {p} is {st.st_size:,} bytes; the limit is {limit:,} bytes")
    return p


def read_yaml_mapping(path: str | Path, *, what: str, limit: int = MIB) -> dict[str, Any]:
    """The YAML mapping in a small text file ({} when empty): the one YAML reader of both packages.

    Errors are one InputFileError line naming `what`, the file and the problem (with its line and column).
    """
    p = Path(path)
    text = read_text_checked(p, limit=limit, what=what, allow_empty=True)
    try:
        data = yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InputFileError(f"{what} {p}: not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputFileError(f"{what} {p}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'line L, column C: problem' on one line; PyYAML's own text spans lines and quotes the source line,
    which may hold a credential."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(problem.split())


# PyYAML ships no type stubs (types-PyYAML is not a dependency), so SafeLoader is Any to mypy.
class _BoundedSafeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """yaml.SafeLoader that refuses nesting deeper than MAX_YAML_DEPTH with a YAML error at the offending node."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace onto path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """obj as indented UTF-8 JSON (non-ASCII kept), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """array as a .npy file (no pickles), written atomically."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
