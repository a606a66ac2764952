"""Shared fixtures: the benchmark data in ../shared/data (required in CI, skipped locally when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("COREVAD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; in CI (CI=true) its absence is a failure, never a silent skip."""
    marker = SHARED_DATA / "ucf_crime" / "test_annotations.tsv"
    if not marker.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"benchmark data missing in CI: {marker} (set COREVAD_SHARED_DATA)")
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own $XDG_STATE_HOME: the MQTT outbox and the open-alert record of one test's
    monitor must never be picked up by another's (a restarted monitor ends the alerts it finds there)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
