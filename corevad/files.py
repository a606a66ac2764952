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

from .errors import DataError

KIB = 1024
MIB = 1024 * KIB


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
