"""The package as users get it: a built wheel, installed non-editable into a fresh venv (base install, no
torch), run from a directory outside the checkout: `eval`, `check`, a short replay and the shipped configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIGS = ("cameras.example.yaml", "demo.yaml", "replay_ucf.yaml", "replay_ucf_text.yaml", "corevad.service",
                   "corevad-stream@.service")


# The installed copy only: a PYTHONPATH pointing at a checkout (how a worktree is tested) would shadow it.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_ENV)
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_every_folder_that_ships_is_listed_in_the_package_list() -> None:
    """pyproject.toml lists its packages (a mapped configs/ folder rules out packages.find): a new package or
    data folder left off the list would be missing from the wheel."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    assert tool["package-dir"] == {"corevad_stream.configs": "configs"}
    on_disk = {"corevad_stream.configs"}
    for top in ("corevad", "corevad_stream"):
        for folder in [REPO / top, *(REPO / top).rglob("*")]:
            if folder.is_dir() and folder.name != "__pycache__" and any(
                    f.is_file() and f.suffix != ".pyc" for f in folder.iterdir()):
                on_disk.add(".".join(folder.relative_to(REPO).parts))
    assert listed == on_disk


@pytest.mark.slow
@pytest.mark.data
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
    assert subprocess.run([str(py), "-c", "import torch"], cwd=work, capture_output=True, env=_ENV).returncode != 0
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
    # The first three videos through the shipped configs/replay_ucf.yaml, as from the checkout (measured there with
    # `corevad-stream replay ... --limit 3 --json`): a wheel missing or misreading that file scores otherwise.
    assert rep["config"].endswith("corevad_stream/configs/replay_ucf.yaml") and "site-packages" in rep["config"]
    assert rep["segments"] == 180 and round(100 * rep["online"]["auc"], 2) == 81.18
    page = (work / "replay.html").read_text()  # the review page's files came with the wheel
    assert 'id="corevad-data"' in page and "EventSource" in page and "Abuse028_x264" in page
    missing = subprocess.run([str(bin_ / "corevad-stream"), "run", "-c", str(cfg), "--tiny-model", "--no-live"],
                             cwd=work, capture_output=True, text=True, timeout=300, env=_ENV)
    assert missing.returncode == 1 and "pip install 'corevad[local]'" in missing.stderr, missing.stderr[-2000:]

    # The user-facing configs came with the wheel, read from the installed package, and the YAML ones validate.
    code = ("import json, sys; from corevad_stream.config import shipped_config, load_config; "
            "print(json.dumps({n: str(shipped_config(n)) for n in sys.argv[1:]})); "
            "[load_config(shipped_config(n)) for n in ('cameras.example.yaml', 'demo.yaml')]")
    paths = json.loads(_run([str(py), "-c", code, *SHIPPED_CONFIGS], cwd=work).stdout)
    assert sorted(paths) == sorted(SHIPPED_CONFIGS)
    for name, path in paths.items():
        assert "site-packages/corevad_stream/configs/" in path and str(REPO) not in path, path
        assert Path(path).read_bytes() == (REPO / "configs" / name).read_bytes(), name
