"""tools/bench_models.py can build the InternVL2-8B-shaped model (on the meta device: no memory, no GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_internvl2_8b_shape_builds_on_meta(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_models.py"), "--internvl2-8b", "--meta", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout[out.stdout.index("{"):])
    # InternVL2-8B has about 8.08 B parameters (InternViT-300M + InternLM2.5-7B + MLP projector).
    assert 7.9e9 < report["internvl2_8b_params"] < 8.2e9
    assert report["meta_smoke"] == "ok"
