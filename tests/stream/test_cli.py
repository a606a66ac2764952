"""`corevad-stream`: check, run with the tiny random models end to end, clean shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from corevad_stream.cli import main
from corevad_stream.sinks.jsonl import read_jsonl


def write_config(path: Path, cameras: list[dict], **extra: object) -> Path:
    data = {"cameras": cameras, "metrics": {"enabled": False},
            "runtime": {"frame_size": 56, "stats_interval_s": 1.0}, **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corevad_stream.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_check_reports_ok_and_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_config(tmp_path / "good.yaml", [{"name": "a", "url": "rtsp://u:pw@h/s"}])
    assert main(["check", "-c", str(good)]) == 0
    out = capsys.readouterr().out
    assert "OK (1 camera(s): a rtsp://***@h/s)" in out and "pw" not in out
    bad = write_config(tmp_path / "bad.yaml", [{"name": "a", "url": "x", "fsp": 3}])
    assert main(["check", "-c", str(bad)]) == 2
    assert "cameras.0.fsp" in capsys.readouterr().err


def test_model_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.yaml", [{"name": "a", "url": "frameless://30"}],
                       model={"vlm": {"backend": "replay", "responses": str(tmp_path / "none.json")}})
    assert main(["run", "-c", str(cfg), "--no-live"]) == 1
    err = capsys.readouterr().err
    assert "model error:" in err and "none.json does not exist" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_tiny_model_end_to_end_with_plain_logs(tmp_path: Path, test_video: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", [{"name": "lobby", "url": str(test_video), "rate": "fast",
                                              "overload_policy": "block"}])
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", "-c", str(cfg), "--tiny-model", "--jsonl", str(out), "--duration", "200")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TINY RANDOM MODEL" in proc.stderr and "MEANINGLESS" in proc.stderr
    recs = read_jsonl(out)
    scores = [r["payload"] for r in recs if r["kind"] == "score"]
    assert [s["index"] for s in scores] == [0, 1, 2, 3]  # the 4 s test video, through real tiny models
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert recs[-1]["topic"] == "corevad/available" and recs[-1]["payload"] == "offline"
    assert "camera lobby: ended" in proc.stderr  # plain log lines (stderr is not a TTY)


@pytest.mark.slow
def test_sigterm_flushes_and_publishes_offline(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", [{"name": "live", "url": "frameless://", "rate": "native"}],
                       model={"vlm": {"backend": "replay", "responses": str(tmp_path / "r.json")}, "clip": None})
    (tmp_path / "r.json").write_text(json.dumps({"live": ["Normal scenes.\nA hallway."] * 1000}))
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "corevad_stream.cli", "run", "-c", str(cfg), "--no-live",
                             "--jsonl", str(out)], stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and sum(r["kind"] == "score" for r in read_jsonl(out)) >= 2):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no scores within 120 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    recs = read_jsonl(out)
    status = [r["payload"] for r in recs if r["topic"] == "corevad/live/status"]
    assert status[-1]["status"] == "offline" and status[-1]["reason"] == "monitor stopped"
    assert recs[-1]["payload"] == "offline"
    assert "shutting down" in err
