"""Real file systems that fail on purpose: a small tmpfs that fills up, an ext4 image that can be shut down
(every write then fails, as on a dying disk), and a read-only mount. They need root (CI runs as root);
without it a test skips with the reason.

Why these and not chmod: root ignores permission bits, and a mount cannot be remounted read-only while a
process holds a file open for writing ("mount point is busy"), so a disk failing *under* an open database
is the ext4 shutdown ioctl (EXT4_IOC_SHUTDOWN, what xfstests' `godown` uses).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2


def _mount(args: list[str], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a test file system needs root (CI runs the tests as root)")
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a test file system here: {done.stderr.strip()}")


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@contextmanager
def small_tmpfs(where: Path, *, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` mounted at `where` (unmounted afterwards)."""
    _mount(["-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs"], where)
    try:
        yield where
    finally:
        _umount(where)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last byte; the filler file (delete it to free space)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


@contextmanager
def ext4_image(where: Path, *, size_mb: int = 16) -> Iterator[Path]:
    """An ext4 file system in a loop-mounted image at `where` (unmounted and deleted afterwards)."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (Debian: e2fsprogs)")
    image = where.with_name(where.name + ".img")
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True, timeout=60)
    _mount(["-o", "loop", str(image)], where)
    try:
        yield where
    finally:
        _umount(where)
        image.unlink(missing_ok=True)


def shut_down(mount_point: Path) -> None:
    """Make every further write (and most reads) on this ext4 fail with EIO, like a disk that died."""
    fd = os.open(mount_point, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, EXT4_GOING_FLAGS_NOLOGFLUSH.to_bytes(4, "little"))
    finally:
        os.close(fd)


def remount_read_only(mount_point: Path) -> None:
    """Remount read-only (only possible while no file on it is open for writing)."""
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True, capture_output=True, timeout=30)
