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


def _lines(out: str) -> dict[str, list[str]]:
    """check's report: {item: [level, ...]}."""
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        level, _, rest = line.partition(" ")
        if level in ("ok", "warning", "error"):
            found.setdefault(rest.strip().split(":")[0], []).append(level)
    return found


def test_check_probes_every_part_and_says_ok(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rtsp_server, mosquitto) -> None:
    from corevad_stream.testing import ScriptedModelServer

    with ScriptedModelServer() as model:
        url = rtsp_server.url.replace("rtsp://", "rtsp://u:pw@")
        good = write_config(tmp_path / "good.yaml", [{"name": "a", "url": url}],
                            mqtt={"host": mosquitto.host, "port": mosquitto.port},
                            model={"vlm": {"backend": "openai", "openai": {"base_url": model.base_url,
                                                                           "api_key_env": None}}, "clip": None},
                            runtime={"state_dir": str(tmp_path / "state")})
        assert main(["check", "-c", str(good)]) == 0
        asked = model.requests
    out = capsys.readouterr().out
    report = _lines(out)
    assert report["cameras.0"] == ["ok"] and "one 320x240 frame read" in out  # a real frame, not a parse
    assert report["mqtt"] == ["ok"] and "CONNACK" in out
    assert report["model.vlm.openai.base_url"] == ["ok"] and asked == 1  # health, then one 1-token answer
    assert set(report["runtime.state_dir"]) == {"ok"}
    assert "OK (1 camera(s): a rtsp://***@127.0.0.1" in out and "pw" not in out
    bad = write_config(tmp_path / "bad.yaml", [{"name": "a", "url": "x", "fsp": 3}])
    assert main(["check", "-c", str(bad)]) == 2
    assert "cameras.0.fsp" in capsys.readouterr().err


def test_check_says_error_for_what_run_would_fail_on(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rtsp_server) -> None:
    from corevad_stream.testing import ScriptedModelServer

    with ScriptedModelServer() as model:
        model.mode = "error500"  # healthy on GET /models, but every answer fails
        cams = [{"name": "nodns", "url": "rtsp://u:pw@camera.invalid/s"},
                {"name": "refused", "url": "rtsp://127.0.0.1:9/s"},
                {"name": "missing", "url": rtsp_server.url + "-nope"}]  # the server answers 404
        # (frameless://abc is refused earlier, by the config's validation: tests/stream/test_config.py)
        cfg = write_config(tmp_path / "c.yaml", cams, mqtt={"host": "127.0.0.1", "port": 9},
                           model={"vlm": {"backend": "openai", "openai": {"base_url": model.base_url,
                                                                          "api_key_env": None}}, "clip": None},
                           runtime={"state_dir": str(tmp_path / "state")})
        t0 = time.monotonic()
        assert main(["check", "-c", str(cfg), "--timeout", "5"]) == 2
        took = time.monotonic() - t0
    captured = capsys.readouterr()
    report, err = _lines(captured.out), " ".join(captured.err.split())
    for item in ("cameras.0.url", "cameras.1.url", "cameras.2.url", "mqtt",
                 "model.vlm.openai.base_url"):
        assert report.get(item) == ["error"], (item, captured.out)
        assert f"{item}: " in err  # the errors again on stderr
    assert "cannot resolve host camera.invalid" in err and "404" in err
    assert "no CONNACK" in err and "HTTP 500" in err
    assert "pw" not in captured.out + captured.err and "Traceback" not in captured.err
    assert took < 5 + 5 + 10  # each probe has its own deadline and they run side by side


def test_check_on_the_state_folder_and_the_outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from corevad_stream.testing.fs_faults import remount_read_only, small_tmpfs

    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", [{"name": "a", "url": "frameless://30"}],
                       model={"vlm": {"backend": "replay", "responses": str(tmp_path / "r.json")}, "clip": None},
                       mqtt={"embedded_broker": {"enabled": True, "port": 0}},
                       runtime={"state_dir": str(state)})
    (tmp_path / "r.json").write_text(json.dumps({"a": ["Normal scenes.\nA hallway."] * 30}))
    state.mkdir()
    outbox = state / "mqtt-outbox-corevad.sqlite3"
    outbox.write_bytes(b"not a database" * 100)  # damaged: run sets it aside, so a warning
    assert main(["check", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "warning runtime.state_dir: MQTT outbox" in " ".join(out.split()) and "set" in out and "aside" in out
    outbox.unlink()
    holder = subprocess.Popen(  # another monitor holds this state folder's outbox
        [sys.executable, "-c", "import time\nfrom corevad_stream.sinks.outbox import Outbox\n"
         f"box = Outbox({str(outbox)!r})\nprint('open', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        assert main(["check", "-c", str(cfg)]) == 2
        assert "in use by another process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    proc = write_config(tmp_path / "proc.yaml", [{"name": "a", "url": "frameless://30"}],
                        model={"vlm": {"backend": "replay", "responses": str(tmp_path / "r.json")}, "clip": None},
                        store={"path": "/proc/corevad/events.sqlite3"}, runtime={"state_dir": str(state)})
    assert main(["check", "-c", str(proc)]) == 2
    assert "store.path: event store /proc/corevad/events.sqlite3: cannot write" in capsys.readouterr().err
    with small_tmpfs(tmp_path / "ro", size_kb=256) as ro:
        remount_read_only(ro)
        cfg = write_config(tmp_path / "ro.yaml", [{"name": "a", "url": "frameless://30"}],
                           model={"vlm": {"backend": "replay", "responses": str(tmp_path / "r.json")}, "clip": None},
                           runtime={"state_dir": str(ro / "corevad")})
        assert main(["check", "-c", str(cfg)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "runtime.state_dir" in err and "Read-only file system" in err


_WITHOUT_TORCH = """
import sys
class _NoTorch:  # this install lacks the 'local' extra: torch cannot be imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "tokenizers", "open_clip"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoTorch())
from corevad_stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["run", "check"])
def test_tiny_model_without_the_extra_is_one_line(tmp_path: Path, command: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", [{"name": "a", "url": "frameless://30"}],
                       runtime={"state_dir": str(tmp_path / "state")})
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, command, "-c", str(cfg), "--tiny-model",
                           *(["--no-live"] if command == "run" else [])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == (1 if command == "run" else 2), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "pip install 'corevad[local]'" in " ".join(proc.stderr.split())
    if command == "run":
        assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) <= 3  # the one missing-extra line


def test_model_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    responses = tmp_path / "r.json"
    responses.write_text('{"a": "not a list"}')
    cfg = write_config(tmp_path / "c.yaml", [{"name": "a", "url": "frameless://30"}],
                       model={"vlm": {"backend": "replay", "responses": str(responses)}})
    assert main(["run", "-c", str(cfg), "--no-live"]) == 1
    err = capsys.readouterr().err
    assert "model error:" in err and "expected a list of answers" in err and "Traceback" not in err


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:  # a 500 MB file that takes no disk and must never be read whole
        fh.truncate(size)
    return path


BAD_INPUTS: list[tuple[str, object, str]] = [
    # (what, how it breaks the config, what the one-line error must say)
    ("missing prompt", {"model": {"vlm": {"prompt_path": "{tmp}/none.txt"}}}, "none.txt does not exist"),
    ("empty prompt", {"model": {"vlm": {"prompt_path": "{tmp}/empty.txt"}}}, "empty.txt is empty"),
    ("binary prompt", {"model": {"vlm": {"prompt_path": "{tmp}/binary.txt"}}}, "binary.txt is a binary file"),
    ("500 MB prompt", {"model": {"vlm": {"prompt_path": "{tmp}/huge.txt"}}}, "huge.txt is 500,000,000 bytes"),
    ("prompt without $Data", {"model": {"vlm": {"prompt_path": "{tmp}/nodata.txt"}}}, "no $Data placeholder"),
    ("500 MB responses", {"model": {"vlm": {"backend": "replay", "responses": "{tmp}/huge.txt"}}},
     "model.vlm.responses: responses file"),
    ("frame_size 100000", {"runtime": {"frame_size": 100000}}, "runtime.frame_size"),
    ("shutdown_timeout_s 1e308", {"runtime": {"shutdown_timeout_s": 1e308}}, "runtime.shutdown_timeout_s"),
    ("fps .inf", {"cameras": [{"name": "a", "url": "frameless://30", "fps": float("inf")}]}, "cameras.0.fps"),
    ("70,000-character prefix", {"mqtt": {"prefix": "p" * 70_000}}, "mqtt.prefix"),
    ("password env not set", {"metrics": {"enabled": True, "port": 0, "host": "0.0.0.0", "username": "u",
                                          "password_env": "COREVAD_TEST_UNSET_PW"}},
     "metrics.password_env: environment variable COREVAD_TEST_UNSET_PW is not set"),
    ("camera file missing", {"cameras": [{"name": "a", "url": "{tmp}/nope.mp4"}]}, "cameras.0.url: video file"),
    ("metrics port busy", {"metrics": {"enabled": True, "port": "{busy}"}}, "metrics.port: port {busy} on "
                                                                             "127.0.0.1 is already in use"),
    ("broker port busy", {"mqtt": {"embedded_broker": {"enabled": True, "port": "{busy}"}}},
     "mqtt.embedded_broker.port: port {busy}"),
]


@pytest.mark.parametrize(("what", "change", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_input_is_one_line_exit_2_before_anything_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, what: str, change: object,
        message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "binary.txt").write_bytes(b"\x7fELF\x00\x01$Data")
    (tmp_path / "nodata.txt").write_text("Is this anomalous?")
    _sparse(tmp_path / "huge.txt", 500_000_000)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    text = json.dumps(change).replace("{tmp}", str(tmp_path)).replace('"{busy}"', str(port))
    data = {"cameras": [{"name": "a", "url": "frameless://30"}], "metrics": {"enabled": False},
            "model": {"vlm": {"backend": "openai"}, "clip": None}}
    for key, value in json.loads(text).items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    import corevad_stream.models

    loaded: list[object] = []
    monkeypatch.setattr(corevad_stream.models, "build_models", lambda *a, **k: loaded.append(a))
    try:
        t0 = time.monotonic()
        rc = main([command, "-c", str(cfg), *(["--no-live"] if command == "run" else [])])
        took = time.monotonic() - t0
    finally:
        busy.close()
    err = capsys.readouterr().err
    want = message.replace("{busy}", str(port))
    assert rc == 2, err
    assert want in " ".join(err.split()), err  # rich may wrap the line on a narrow terminal
    assert "Traceback" not in err and loaded == [] and took < 5.0


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
    assert "model: ok" in err and "live: " in err and "seg/s=" in err  # the periodic stats line, despite --no-live


@pytest.mark.slow
async def test_demo_replays_real_answers_into_a_running_broker(mosquitto, mqtt_collector, shared_data: Path,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    import asyncio

    sub = await mqtt_collector(mosquitto, topics=("demo/#",))
    out = tmp_path / "demo.jsonl"
    args = ["demo", "--responses", str(shared_data / "ucf_crime" / "VLM_responses_LRC_ucf.json"),
            "--video", "Explosion020_x264", "--video", "Shooting018_x264", "--speed", "20", "--labels-only",
            "--mqtt-port", str(mosquitto.port), "--prefix", "demo", "--metrics-port", "0", "--no-live",
            "--jsonl", str(out)]
    t0 = time.monotonic()
    rc = await asyncio.to_thread(main, args)
    took = time.monotonic() - t0
    assert rc == 0 and took < 60, took
    await sub.wait_for(lambda: len(sub.payloads("demo/events")) >= 4, timeout=30, what="events")
    events = [json.loads(p) for p in sub.payloads("demo/events")]
    news = [e["after"] for e in events if e["type"] == "new"]
    assert {a["camera"] for a in news} == {"Explosion020_x264", "Shooting018_x264"}  # both videos alert
    assert all(a["explanation"] and "scene" not in a["explanation"][0].lower() for a in news)  # real descriptions
    # Through the broker that was already running; availability once per state, not twice.
    await sub.wait_for(lambda: sub.payloads("demo/available")[-1:] == [b"offline"], timeout=30, what="offline")
    assert sub.payloads("demo/available") == [b"online", b"offline"]
    recs = read_jsonl(out)
    assert any(r["kind"] == "score" and r["payload"]["available"] for r in recs)
