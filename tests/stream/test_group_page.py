"""One page for a group: two monitor processes (file cameras, the scripted model server) on one prefix and a
`corevad-stream web` process; a real Mosquitto between them. Plus the web command's config errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from corevad_stream.cli import main
from corevad_stream.testing import ScriptedModelServer

ANOMALOUS = "Anomalous scenes.\nA man climbs over the gate."
PREFIX = "grp"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "corevad_stream.cli", *args], stdout=fh,
                                stderr=subprocess.STDOUT, env=os.environ.copy())


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


async def _until(check: Callable[[], Any], what: str, *, timeout: float, logs: list[Path] = ()) -> Any:  # type: ignore[assignment]
    """Poll an (a)sync check until it returns something truthy; on timeout say what and show the logs' tails."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                got = check()
                if asyncio.iscoroutine(got):
                    got = await got
                if got:
                    return got
                await asyncio.sleep(0.2)
    except TimeoutError:
        tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs if p.exists())
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}\n{tails}") from None


def _port(log: Path) -> int | None:
    m = re.search(r"review page on http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
    return int(m.group(1)) if m else None


def _monitor_config(tmp: Path, name: str, cameras: list[str], clip: Path, mosquitto: Any, model: ScriptedModelServer,
                    *, store: dict[str, Any], page: bool) -> Path:
    data = {
        "cameras": [{"name": c, "url": str(clip), "loop": True} for c in cameras],
        "model": {"tiny": False, "clip": None, "vlm": {"backend": "openai", "max_new_tokens": 16, "openai": {
            "base_url": model.base_url, "model": "m", "api_key_env": None, "max_side": 32, "timeout_s": 30}}},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "prefix": PREFIX, "keepalive_s": 5},
        "metrics": {"enabled": page, "port": 0, "group_view": page},
        "store": store,
        "refinement": {"smooth_length": 1},
        "runtime": {"frames_per_segment": 2, "frame_size": 32, "stats_interval_s": 1.0,
                    "state_dir": str(tmp / f"state-{name}")},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
async def test_a_web_process_shows_the_whole_group_live(  # type: ignore[no-untyped-def]
        mosquitto, video_factory, browser, postgres_url: str, tmp_path: Path) -> None:
    clip = video_factory("gate.mp4", seconds=2, size=(64, 48), fps=8)
    # One shared store for the group (PostgreSQL); its password comes from the environment, as configured.
    store = {"url": postgres_url, "password_env": "COREVAD_TEST_PG_PASSWORD"}
    logs = {n: tmp_path / f"{n}.log" for n in ("a", "b", "web")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with ScriptedModelServer(lambda body: ANOMALOUS) as model:
        try:
            procs["a"] = _spawn(["run", "-c", str(_monitor_config(tmp_path, "a", ["a1", "a2"], clip, mosquitto, model,
                                                                   store=store, page=True)), "--no-live"], logs["a"])
            procs["b"] = _spawn(["run", "-c", str(_monitor_config(tmp_path, "b", ["b1"], clip, mosquitto, model,
                                                                   store=store, page=False)), "--no-live"], logs["b"])
            web_cfg = tmp_path / "web.yaml"
            web_cfg.write_text(yaml.safe_dump({
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "prefix": PREFIX},
                "store": store, "metrics": {"port": 0}, "runtime": {"stats_interval_s": 1.0}}))
            procs["web"] = _spawn(["web", "-c", str(web_cfg)], logs["web"])
            port = await _until(lambda: _port(logs["web"]), "the web process's port", timeout=60,
                                logs=list(logs.values()))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                async def cameras() -> dict[str, Any] | None:
                    got = {c["name"]: c for c in (await client.get("/api/cameras")).json()}
                    heard = all(got.get(n, {}).get("run_id") for n in ("a1", "a2", "b1"))
                    return got if heard else None

                cams = await _until(cameras, "every camera of both monitors", timeout=120, logs=list(logs.values()))
                assert set(cams) == {"a1", "a2", "b1"}
                # The owner on each card: the `monitor` field where the status carries it, else the owner's run.
                owner = {n: c["monitor"] or c["run_id"] for n, c in cams.items()}
                assert owner["a1"] == owner["a2"] != owner["b1"]
                assert all(c["source"] == "bus" and not c["stale"] for c in cams.values())

                # A bad bus payload is counted (and logged once), and breaks nothing.
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
                    await pub.publish(f"{PREFIX}/b1/score", b"{garbage", qos=1)
                    await pub.publish(f"{PREFIX}/events", b'{"type": "new", "after": 3}', qos=1)

                async def bad_counted() -> str | None:
                    text = (await client.get("/metrics")).text
                    return text if all(re.search(rf'corevad_bus_bad_messages_total\{{reason="{r}"\}} [1-9]', text)
                                       for r in ("score", "events")) else None

                await _until(bad_counted, "the bad payloads counted", timeout=30, logs=list(logs.values()))
                # Live: a stream opened after them carries new scores of both monitors' cameras.
                seen: set[str] = set()
                async with client.stream("GET", "/api/stream", timeout=httpx.Timeout(10, read=30)) as stream:
                    async with asyncio.timeout(90):
                        async for line in stream.aiter_lines():
                            if line.startswith("data: "):
                                m = json.loads(line[6:])
                                if m["kind"] == "score":
                                    seen.add(m["camera"])
                            if {"a1", "b1"} <= seen:
                                break

                # History from the shared store: the alerts both monitors stored (the scripted model says anomalous).
                async def stored() -> set[str] | None:
                    cams = {a["camera"] for a in await _alerts(client)}
                    return cams if {"a1", "a2", "b1"} <= cams else None

                assert await _until(stored, "stored alerts of every camera", timeout=60,
                                    logs=list(logs.values())) == {"a1", "a2", "b1"}
                one = (await _alerts(client))[0]  # one alert with its score curve, also from the shared store
                detail = (await client.get(f"/api/events/{one['id']}")).json()
                assert detail["id"] == one["id"] and detail["scores"], detail
                page = await client.get("/")
                assert page.status_code == 200 and "corevad" in page.text
            # In a browser: the web process's page shows the cards of both monitors' cameras, updated live.
            await asyncio.to_thread(_page_shows_the_group, browser, f"http://127.0.0.1:{port}/")

            # A monitor's own page (metrics.group_view) lists its cameras and the group's others from the bus.
            a_port = _port(logs["a"])
            assert a_port is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{a_port}", timeout=10) as client:
                async def group() -> list[dict[str, Any]] | None:
                    got = (await client.get("/api/cameras")).json()
                    return got if {c["name"] for c in got} == {"a1", "a2", "b1"} else None

                listed = await _until(group, "monitor a's page with b1", timeout=60, logs=list(logs.values()))
                by_name = {c["name"]: c for c in listed}
                assert by_name["b1"]["source"] == "bus" and "source" not in by_name["a1"]  # a1 is a's own
        finally:
            codes = {n: _stop(p) for n, p in procs.items()}
    assert codes["web"] == 0, logs["web"].read_text()[-2000:]
    assert "Traceback" not in logs["web"].read_text()


def _page_shows_the_group(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def scored(d: Any, cam: str) -> int:
        meta = d.find_elements(By.CSS_SELECTOR, f".cam[data-camera={cam}] .meta")
        m = re.search(r"(\d+) scored", meta[0].text) if meta else None
        return int(m.group(1)) if m else -1

    driver.get(url)
    wait = WebDriverWait(driver, 60, poll_frequency=0.1)
    wait.until(lambda d: {e.get_attribute("data-camera") for e in d.find_elements(By.CSS_SELECTOR, ".cam")}
               == {"a1", "a2", "b1"}, "cards of both monitors' cameras")
    first = {cam: scored(driver, cam) for cam in ("a1", "b1")}
    assert min(first.values()) >= 0, driver.page_source[:2000]
    # Live over the stream: the counts of a camera of each monitor grow without a reload.
    wait.until(lambda d: all(scored(d, cam) > first[cam] for cam in first), "live scores of a1 and b1")


async def _alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/events")
    return r.json() if r.status_code == 200 else []


def test_web_config_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(data: dict[str, Any]) -> str:
        path = tmp_path / "web.yaml"
        path.write_text(yaml.safe_dump(data))
        assert main(["web", "-c", str(path)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "Traceback" not in err
        return err

    assert "mqtt: the group page reads the cameras' live state from the MQTT bus" in run({"metrics": {"port": 0}})
    assert "mqtt.prot: Extra inputs are not permitted" in run({"mqtt": {"prot": 1}})
    assert "store.path: no event store at" in run({"mqtt": {}, "store": {"path": str(tmp_path / "none.sqlite3")}})
    # A monitor's whole config is validated whole: its camera errors still count.
    assert "cameras.0.url" in run({"cameras": [{"name": "a", "url": ""}], "mqtt": {}})
    assert "metrics.enabled: false leaves" in run({"mqtt": {}, "store": {"enabled": False},
                                                   "metrics": {"enabled": False}})
    assert "metrics.host '0.0.0.0' is not loopback" in run({"mqtt": {}, "metrics": {"host": "0.0.0.0"}})
    assert "store.password_env: environment variable NO_SUCH_PG_PW is not set" in run(
        {"mqtt": {}, "store": {"url": "postgresql://corevad@127.0.0.1:5/g", "password_env": "NO_SUCH_PG_PW"}})
    assert "store.url" in run({"mqtt": {}, "store": {"url": "mysql://x@h/db"}})
    cams = [{"name": "a", "url": "frameless://"}]
    assert "metrics.group_view: the group's cameras come from the MQTT bus" in run(
        {"cameras": cams, "metrics": {"group_view": True}})
    with pytest.raises(SystemExit):  # argparse: the config is required
        main(["web"])
