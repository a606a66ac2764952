"""Scene context through the runtime: config bounds (one line, naming the camera field), `check` shows the
prompt, and two cameras sharing the real openai backend each send their own context (scripted server), which
/api/cameras shows with the prompt; the same run's alert events carry their notification fields, whose
snapshot link answers on the real HTTP server."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from stream_doubles import ANOMALOUS, NORMAL, stream_config

from corevad.prompt import CONTEXT_HEADING, CONTEXT_MAX_CHARS, camera_prompt, load_prompt
from corevad_stream import App, MemorySink
from corevad_stream.cli import main
from corevad_stream.config import ConfigError, config_from_dict
from corevad_stream.testing import ScriptedModelServer

DOCK = "A loading dock: forklifts and people carrying boxes are normal at any hour."
LOBBY = "A hotel lobby: people with suitcases are normal; running or a fall matters."


@pytest.mark.parametrize(("context", "says"), [
    ("x" * (CONTEXT_MAX_CHARS + 1), f"at most {CONTEXT_MAX_CHARS}"),
    ("a\x1b[31m red lobby", "control character U+001B"),
    ("frames: $Data", "'$'"),
])
def test_bad_context_is_one_config_line_naming_the_camera_field(context: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"cameras": [{"name": "ok", "url": "frameless://"},
                                      {"name": "dock", "url": "frameless://", "context": context}]}, source="c.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("c.yaml: invalid config: cameras.1.context: camera 'dock'")
    assert says in msg


def test_bad_context_exits_2_from_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cameras": [{"name": "dock", "url": "frameless://", "context": "x" * 601}]}))
    assert main(["check", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cameras.0.context" in err and "601 characters" in err


def test_check_shows_each_cameras_prompt_with_its_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    with ScriptedModelServer() as srv:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({
            "cameras": [{"name": "dock", "url": "frameless://30", "context": DOCK},
                        {"name": "hall", "url": "frameless://30"}],
            "metrics": {"enabled": False}, "store": {"enabled": False},
            "model": {"clip": None, "vlm": {"backend": "openai", "openai": {"base_url": srv.base_url,
                                                                             "api_key_env": None}}}}))
        assert main(["check", "-c", str(cfg), "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    head = next(ln for ln in out.splitlines() if ln.startswith("ok      cameras.0.context: dock"))
    bar = " " * 8 + "|"
    shown = [ln.removeprefix(bar).removeprefix(" ") for ln in out.splitlines() if ln.startswith(bar)]
    assert "\n".join(shown) == camera_prompt(load_prompt(), DOCK, 8).rstrip("\n")  # the whole prompt, as sent
    assert f"{len(DOCK)} characters" in head
    assert "cameras.1.context" not in out  # no context: nothing to show, the paper's prompt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _text(body: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for m in body["messages"] for p in m["content"] if isinstance(p, dict))


@pytest.mark.slow
@pytest.mark.services
async def test_two_cameras_send_their_own_context_and_events_link_to_the_page(tmp_path: Path,
                                                                              test_video: Path) -> None:
    texts: list[str] = []

    def answer(body: dict[str, Any]) -> str:
        text = _text(body)
        texts.append(text)
        return ANOMALOUS if DOCK in text else NORMAL  # the answer says which camera's prompt came

    port = _free_port()
    with ScriptedModelServer(answer) as srv:
        vlm = {"backend": "openai", "max_new_tokens": 16,
               "openai": {"base_url": srv.base_url, "model": "m", "api_key_env": None, "max_side": 32,
                          "concurrency": 2}}
        cams = [{"name": "dock", "url": str(test_video), "rate": "fast", "overload_policy": "block",
                 "context": DOCK, "display_name": "Loading dock"},
                {"name": "lobby", "url": str(test_video), "rate": "fast", "overload_policy": "block",
                 "context": LOBBY, "alerts": {"snapshot": False}}]
        cfg = stream_config(cams, model={"tiny": False, "clip": None, "vlm": vlm},
                            runtime={"max_batch": 2}, refinement={"smooth_length": 1}, alerts={"snapshot": True},
                            metrics={"enabled": True, "port": port, "public_url": f"http://127.0.0.1:{port}/"},
                            store={"path": str(tmp_path / "e.sqlite3")})
        sink = MemorySink()
        async with App(cfg, sinks=[sink]) as app:
            await app.wait_finished(timeout=120)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                cameras = {c["name"]: c for c in (await client.get("/api/cameras")).json()}
                events = [m.payload for m in sink.of("events")]
                assert events, "the dock camera's anomalous answers open an alert"
                snapshot_url = events[0]["snapshot_url"]  # type: ignore[index]
                for _ in range(200):  # the snapshot goes out after its event, through the store's thread
                    snap = await client.get(snapshot_url)
                    if snap.status_code == 200:
                        break
                    await asyncio.sleep(0.05)
    # Every request carried exactly one camera's context, and each camera's segments got its own answers.
    assert texts and all((DOCK in t) != (LOBBY in t) and t.count(CONTEXT_HEADING) == 1 for t in texts)
    labels = {cam: {m.payload["raw_label"] for m in sink.of("score", cam)} for cam in ("dock", "lobby")}  # type: ignore[index]
    assert labels == {"dock": {1}, "lobby": {0}}
    template = load_prompt()
    for name, ctx in (("dock", DOCK), ("lobby", LOBBY)):
        assert cameras[name]["context"] == ctx
        assert cameras[name]["prompt"] == camera_prompt(template, ctx, 8)
    # Notification fields on every event of the run; absolute links from metrics.public_url.
    assert {e["after"]["camera"] for e in events} == {"dock"}  # type: ignore[index]
    for e in events:
        assert isinstance(e, dict)
        assert e["title"] == "Loading dock: A man smashes the shop window."
        assert e["explanation"] == "A man smashes the shop window." and e["severity"] == "high"
        assert e["event_url"] == f"http://127.0.0.1:{port}/#event={e['after']['id']}"
        assert e["snapshot_url"] == f"http://127.0.0.1:{port}/api/events/{e['after']['id']}/snapshot"
    assert {e["type"] for e in events} >= {"new", "end"}  # type: ignore[index]
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    assert json.loads(json.dumps(events))  # the payloads are plain JSON
