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
