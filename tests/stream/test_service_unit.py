"""The shipped systemd unit passes `systemd-analyze verify` with its commands pointed at this install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corevad_stream.config import shipped_config


def test_service_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: tools/setup.sh installs Debian's systemd package")
    unit = shipped_config("corevad.service").read_text()
    assert "/opt/corevad/bin/corevad-stream run -c /etc/corevad/cameras.yaml" in unit
    bindir = Path(sys.executable).parent
    ok = tmp_path / "corevad.service"
    ok.write_text(unit.replace("/opt/corevad/bin/", f"{bindir}/"))
    proc = subprocess.run([analyze, "verify", str(ok)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # and the check is real: a unit whose command does not exist fails it
    bad = tmp_path / "bad.service"
    bad.write_text(unit.replace("/opt/corevad/bin/", "/nonexistent/"))
    proc = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "not executable" in proc.stderr


def test_the_group_template_unit_verifies_as_an_instance(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: tools/setup.sh installs Debian's systemd package")
    unit = shipped_config("corevad-stream@.service").read_text()
    assert "run -c /etc/corevad/group.yaml --no-live --metrics-port %i" in unit
    assert "StateDirectory=corevad-group/%i" in unit  # one state folder (and so one monitor id) per instance
    bindir = Path(sys.executable).parent
    ok = tmp_path / "corevad-stream@9111.service"
    ok.write_text(unit.replace("/opt/corevad/bin/", f"{bindir}/"))
    proc = subprocess.run([analyze, "verify", str(ok)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "corevad-stream@9112.service"
    bad.write_text(unit.replace("/opt/corevad/bin/", "/nonexistent/"))
    proc = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "not executable" in proc.stderr
