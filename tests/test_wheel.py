"""The package as users get it: a built wheel, installed non-editable into a fresh venv (base install, no
torch), run from a directory outside the checkout: `eval`, `check` and a short replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.data]


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_base_install_runs_outside_the_checkout(tmp_path: Path, shared_data: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
          str(REPO)], cwd=tmp_path)
    wheel = next(dist.glob("corevad-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py, bin_ = venv / "bin" / "python", venv / "bin"
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # The base install has no torch: nothing it runs may need it.
    assert subprocess.run([str(py), "-c", "import torch"], cwd=work, capture_output=True).returncode != 0
    files = _run([str(py), "-c", "import corevad, corevad_stream; from corevad.prompt import default_prompt_path;"
                  "from corevad.config import default_eval_config; from corevad_stream.replay_cli import "
                  "DEFAULT_CONFIG; print(default_prompt_path(), default_eval_config(), DEFAULT_CONFIG)"], cwd=work)
    assert str(REPO) not in files.stdout and "site-packages" in files.stdout  # the packaged copies

    d = shared_data / "ucf_crime"
    ann, resp = str(d / "test_annotations.tsv"), str(d / "VLM_responses_LRC_ucf.json")
    ev = json.loads(_run([str(bin_ / "corevad"), "eval", "--dataset", "ucf-crime", "--annotations", ann,
                          "--responses", resp, "--json"], cwd=work).stdout)
    assert round(100 * ev["auc"], 2) == 81.32  # the text-only offline protocol, as from the checkout

    cfg = work / "cams.yaml"
    cfg.write_text(json.dumps({"cameras": [{"name": "Abuse028_x264", "url": "frameless://1412", "rate": "fast",
                                            "overload_policy": "block"}],
                               "model": {"vlm": {"backend": "replay", "responses": resp}, "clip": None},
                               "metrics": {"enabled": False}}))
    assert "OK (1 camera(s)" in _run([str(bin_ / "corevad-stream"), "check", "-c", str(cfg)], cwd=work).stdout
    rep = json.loads(_run([str(bin_ / "corevad-stream"), "replay", "--dataset", "ucf-crime", "--annotations", ann,
                           "--responses", resp, "--limit", "3", "--json", "--html", "replay.html"], cwd=work).stdout)
    assert rep["segments"] > 0 and 0.0 <= rep["online"]["auc"] <= 1.0
    page = (work / "replay.html").read_text()  # the review page's files came with the wheel
    assert 'id="corevad-data"' in page and "EventSource" in page and "Abuse028_x264" in page
    missing = subprocess.run([str(bin_ / "corevad-stream"), "run", "-c", str(cfg), "--tiny-model", "--no-live"],
                             cwd=work, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "pip install 'corevad[local]'" in missing.stderr, missing.stderr[-2000:]
