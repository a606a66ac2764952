"""The review API's guards against the real server (uvicorn) and a real event store (issue 18, items 6, 8, 9,
10, 18): keyset paging and bounds, a bounded API with its own threads, the Host check, CSRF on the ack, the
security headers, empty or missing passwords, and live streams that end cleanly when the server stops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from corevad_stream.cli import main
from corevad_stream.config import ConfigError, config_from_dict
from corevad_stream.http import ApiBusy, ApiLimiter, HttpServer, LiveFeed, allowed_host_names
from corevad_stream.messages import Message
from corevad_stream.security import SecretError
from corevad_stream.store import StoreLocation, open_store

T0 = 1.8e9


def _fill(at: StoreLocation | Path, n: int, *, cameras: int = 3, same_time_every: int = 0) -> list[str]:
    """n ended alerts through the store's own writer; returns their ids newest first as the API orders them."""
    store = open_store(_at(at))
    rows: list[tuple[float, str]] = []
    for i in range(n):
        start = T0 + (i // same_time_every if same_time_every else i) * 10.0  # equal start times: id breaks ties
        alert_id, camera = f"cam{i % cameras}-r-{i:05d}", f"cam{i % cameras}"
        a = {"id": alert_id, "camera": camera, "active": False, "start_time": start, "end_time": start + 5,
             "explanation": ["x"]}
        store.write("events", camera, {"type": "end", "after": a}, start + 5)
        rows.append((-start, alert_id))
    store.close()
    return [i for _, i in sorted(rows)]


def _at(at: StoreLocation | Path) -> StoreLocation:
    return at if isinstance(at, StoreLocation) else StoreLocation(path=at)


@asynccontextmanager
async def _server(store: StoreLocation | Path | None, **kw: Any
                  ) -> AsyncIterator[tuple[HttpServer, httpx.AsyncClient]]:
    feed = kw.pop("feed", LiveFeed())
    server = HttpServer(host=kw.pop("host", "127.0.0.1"), port=0, render_metrics=lambda: b"m 1\n",
                        cameras=list, model=dict, store=None if store is None else _at(store), feed=feed, **kw)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=20) as client:
        yield server, client


async def test_keyset_paging_walks_every_alert_once_in_order_and_bounds_are_400(store_at: StoreLocation) -> None:
    ids = _fill(store_at, 230, same_time_every=4)  # ties on start_time across pages
    async with _server(store_at) as (_, client):
        walked: list[str] = []
        before = None
        while True:
            params: dict[str, Any] = {"limit": 50, **({"before": before} if before else {})}
            page = (await client.get("/api/events", params=params)).json()
            walked += [a["id"] for a in page]
            if len(page) < 50:
                break
            before = page[-1]["id"]
        cam = (await client.get("/api/events", params={"camera": "cam1", "before": ids[10], "limit": 5})).json()
        by_offset = (await client.get("/api/events", params={"offset": 100, "limit": 3})).json()
        bad = {q: await client.get("/api/events", params=dict([q])) for q in (
            ("offset", str(2 ** 63)), ("offset", "-1"), ("offset", "10001"), ("limit", "0"), ("limit", "1001"),
            ("limit", "ten"), ("before", "no-such-alert"), ("until", "inf"))}
        nul = await client.get("/static/corevad%00.js")
        names = [(await client.get(f"/static/{n}")).status_code
                 for n in ("a%00", ".hidden.js", "%2e%2e", "x" * 300 + ".js")]
        page_js = await client.get("/static/corevad.js")
    assert walked == ids  # every alert once, newest first, ties by id
    assert [a["id"] for a in cam] == [i for i in ids[11:] if i.startswith("cam1-")][:5]
    assert [a["id"] for a in by_offset] == ids[100:103]
    assert {q: r.status_code for q, r in bad.items()} == dict.fromkeys(bad, 400)
    assert "before=" in bad[("offset", "10001")].json()["error"]  # the 400 says how to page deeper
    assert bad[("before", "no-such-alert")].json()["error"].startswith("before:")
    assert nul.status_code == 404 and names == [404, 404, 404, 404] and page_js.status_code == 200


async def test_a_full_api_answers_503_with_retry_after_and_recovers(tmp_path: Path) -> None:
    _fill(tmp_path / "e.sqlite3", 10)
    async with _server(tmp_path / "e.sqlite3", api_concurrent=1, api_queued=0) as (server, client):
        async with server.limiter.slot():  # the one reader is busy (held by the test, on the server's loop)
            busy = await client.get("/api/events")
            live = await client.get("/api/cameras")  # in-memory routes are not store reads
        after = await client.get("/api/events")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
    assert live.status_code == 200 and after.status_code == 200 and len(after.json()) == 10
    assert server.limiter.refused == 1


async def test_limiter_queues_a_few_and_refuses_the_rest() -> None:
    lim = ApiLimiter(concurrent=1, queued=1, wait_s=5.0)
    order: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with lim.slot():
            order.append("first")
            await release.wait()

    async def wait_turn() -> None:
        async with lim.slot():
            order.append("queued")

    first = asyncio.create_task(hold())
    while not order:
        await asyncio.sleep(0)
    queued = asyncio.create_task(wait_turn())
    while lim._waiting == 0:  # noqa: SLF001 - the waiting room is what this test is about
        await asyncio.sleep(0)
    with pytest.raises(ApiBusy):
        async with lim.slot():
            pass
    release.set()
    await asyncio.wait_for(asyncio.gather(first, queued), 10)
    assert order == ["first", "queued"] and lim.refused == 1
    short = ApiLimiter(concurrent=1, queued=4, wait_s=0.05)
    async with short.slot():
        with pytest.raises(ApiBusy):  # a wait is bounded too
            async with short.slot():
                pass
    with pytest.raises(ValueError, match="concurrent >= 1"):
        ApiLimiter(concurrent=0)


async def test_store_reads_do_not_use_the_default_thread_pool(tmp_path: Path) -> None:
    """The burst of item 6 queued behind other work in the default pool: the API reads on its own threads."""
    _fill(tmp_path / "e.sqlite3", 20)
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    loop.set_default_executor(pool)
    stuck = threading.Event()
    blockers = [loop.run_in_executor(None, stuck.wait, 60) for _ in range(2)]  # the default pool is full
    try:
        async with _server(tmp_path / "e.sqlite3") as (_, client):
            got = await asyncio.wait_for(asyncio.gather(*(client.get("/api/events") for _ in range(8)),
                                                        client.get(f"/api/events/{'cam0-r-00000'}")), 15)
    finally:
        stuck.set()
        await asyncio.gather(*blockers)
    assert [r.status_code for r in got] == [200] * 9 and all(len(r.json()) == 20 for r in got[:8])
    assert got[8].json()["id"] == "cam0-r-00000"


async def test_host_header_is_checked_against_the_configured_names(tmp_path: Path) -> None:
    async with _server(None, allowed_hosts=["monitor.lan"]) as (server, client):
        def get(host: str) -> Any:
            return client.get("/api/cameras", headers={"Host": host})

        codes = {h: (await get(h)).status_code for h in (
            f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost", f"[::1]:{server.port}",
            "monitor.lan", "MONITOR.LAN.", "attacker.example", f"attacker.example:{server.port}", "127.0.0.1.nip.io",
            "192.168.1.5", "")}
        metrics = await get("attacker.example")
    assert codes == {f"127.0.0.1:{server.port}": 200, f"localhost:{server.port}": 200, "localhost": 200,
                     f"[::1]:{server.port}": 200, "monitor.lan": 200, "MONITOR.LAN.": 200,
                     "attacker.example": 421, f"attacker.example:{server.port}": 421, "127.0.0.1.nip.io": 421,
                     "192.168.1.5": 421, "": 421}
    assert "allowed_hosts" in metrics.text
    wildcard = allowed_host_names("0.0.0.0", [])
    assert wildcard is not None and "localhost" in wildcard and "attacker.example" not in wildcard
    assert allowed_host_names("cam-box.lan", ["*"]) is None  # '*' turns the check off (behind a proxy)
    named = allowed_host_names("192.168.1.5", ["nvr.lan"])
    assert named == frozenset({"192.168.1.5", "nvr.lan"})  # not loopback: no localhost names
    with pytest.raises(ConfigError, match="allowed_hosts.0"):
        config_from_dict({"cameras": [{"name": "a", "url": "x.mp4"}],
                          "metrics": {"allowed_hosts": ["http://monitor.lan:80"]}})


async def test_a_wildcard_bind_answers_ip_literals_and_its_names_only() -> None:
    async with _server(None, host="0.0.0.0", username="op", password="pw") as (server, client):
        auth = ("op", "pw")
        ip = await client.get("/api/cameras", auth=auth, headers={"Host": f"10.1.2.3:{server.port}"})
        name = await client.get("/api/cameras", auth=auth, headers={"Host": "attacker.example"})
    assert ip.status_code == 200 and name.status_code == 421


async def test_ack_refuses_cross_site_requests_even_with_credentials(store_at: StoreLocation) -> None:
    ids = _fill(store_at, 3)
    async with _server(store_at, username="op", password="s3cret") as (server, client):
        own = f"http://127.0.0.1:{server.port}"
        auth = ("op", "s3cret")

        async def ack(alert_id: str, **kw: Any) -> int:
            return (await client.post(f"/api/events/{alert_id}/ack", auth=auth, **kw)).status_code

        form = await ack(ids[0], data={"x": "1"}, headers={"Origin": "http://attacker.example",
                                                           "Sec-Fetch-Site": "cross-site"})
        # What a no-cors fetch can send: a CORS-safelisted type, the page's Origin.
        no_cors = await ack(ids[0], content="{}", headers={"Content-Type": "text/plain",
                                                           "Origin": "http://attacker.example"})
        json_cross = await ack(ids[0], json={}, headers={"Origin": "http://attacker.example"})
        json_site = await ack(ids[0], json={}, headers={"Sec-Fetch-Site": "same-site"})
        null_origin = await ack(ids[0], json={}, headers={"Origin": "null"})
        same_no_json = await ack(ids[0], data={"x": "1"}, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
        unacked = (await client.get(f"/api/events/{ids[0]}", auth=auth)).json()["acknowledged_at"]
        page = await ack(ids[0], json={}, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
        script = await ack(ids[1], json={})  # curl or a script: no Origin, no Sec-Fetch-Site
        no_auth = (await client.post(f"/api/events/{ids[2]}/ack", json={})).status_code
        acked = [(await client.get(f"/api/events/{i}", auth=auth)).json()["acknowledged_at"] for i in ids]
    assert (form, no_cors, json_cross, json_site, null_origin) == (403, 403, 403, 403, 403)
    assert same_no_json == 415 and unacked is None
    assert (page, script, no_auth) == (200, 200, 401)
    assert acked[0] and acked[1] and acked[2] is None


async def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    _fill(tmp_path / "e.sqlite3", 1)
    feed = LiveFeed()
    async with _server(tmp_path / "e.sqlite3", feed=feed, username="op", password="pw") as (_, client):
        auth = ("op", "pw")
        responses = [await client.get("/", auth=auth), await client.get("/api/events", auth=auth),
                     await client.get("/static/nope.js", auth=auth), await client.get("/metrics"),
                     await client.get("/", auth=auth, headers={"Host": "evil.example"}),
                     await client.post("/api/events/x/ack", auth=auth, content="a")]
        async with client.stream("GET", "/api/stream", auth=auth) as sse:
            responses.append(sse)
    assert [r.status_code for r in responses] == [200, 200, 404, 401, 421, 415, 200]
    for r in responses:
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], r.url
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_passwords_must_exist_and_not_be_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cam = [{"name": "a", "url": "x.mp4"}]
    with pytest.raises(ConfigError, match="metrics.username is set without a password"):
        config_from_dict({"cameras": cam, "metrics": {"username": "op"}})  # loopback too: not "no auth"
    with pytest.raises(ConfigError, match="metrics.password_file need a username"):
        config_from_dict({"cameras": cam, "metrics": {"password_env": "PW"}})
    monkeypatch.setenv("COREVAD_TEST_EMPTY_PW", "")
    cfg = config_from_dict({"cameras": cam, "metrics": {"host": "0.0.0.0", "username": "op",
                                                        "password_env": "COREVAD_TEST_EMPTY_PW"}})
    with pytest.raises(SecretError, match="COREVAD_TEST_EMPTY_PW is empty"):
        cfg.metrics.password()
    with pytest.raises(ValueError, match="non-empty password"):
        HttpServer(host="0.0.0.0", port=0, render_metrics=lambda: b"", cameras=list, model=dict, store=None,
                   feed=None, username="op", password="")


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_empty_password_off_loopback_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setenv("COREVAD_TEST_EMPTY_PW", "")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "cameras": [{"name": "a", "url": "frameless://30"}], "model": {"vlm": {"backend": "openai"}, "clip": None},
        "metrics": {"enabled": True, "port": 0, "host": "0.0.0.0", "username": "op",
                    "password_env": "COREVAD_TEST_EMPTY_PW"}, "store": {"path": str(tmp_path / "e.sqlite3")}}))
    rc = main([command, "-c", str(cfg), *(["--no-live"] if command == "run" else [])])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "COREVAD_TEST_EMPTY_PW is empty" in " ".join(err.split()) and "Traceback" not in err


async def test_live_streams_end_cleanly_when_the_server_stops(capfd: pytest.CaptureFixture[str]) -> None:
    """Item 18: a browser left open printed an ASGI CancelledError traceback when the monitor stopped."""
    feed = LiveFeed()
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=20) as client:  # outlives the server, as a browser would
        server = HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict,
                            store=None, feed=feed)
        async with server:
            readers = []
            for _ in range(3):
                resp = await client.send(client.build_request("GET", f"http://127.0.0.1:{server.port}/api/stream"),
                                         stream=True)

                async def read(resp: httpx.Response = resp) -> str:
                    async for line in resp.aiter_lines():
                        lines.append(line)
                    return "ended"

                readers.append(asyncio.create_task(read()))
            while len([x for x in lines if x.startswith(": corevad")]) < 3:
                await asyncio.sleep(0.01)
            await feed.send(Message("state", "normal", camera="lane"))
            while not any(x.startswith("data: ") for x in lines):
                await asyncio.sleep(0.01)
        ended = await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 10)
    # The server has stopped: every stream ended as a complete response, and nothing was cancelled.
    err = capfd.readouterr().err
    assert ended == ["ended"] * 3, ended
    assert json.loads(next(x for x in lines if x.startswith("data: "))[6:])["payload"] == "normal"
    assert "Traceback" not in err and "CancelledError" not in err and "graceful shutdown" not in err, err


async def test_stopping_the_monitor_with_a_browser_connected_prints_no_traceback(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """Item 18 through the whole App (what `run` and `demo` do): the stream ends, nothing is cancelled."""
    from stream_doubles import ScriptedBackend, stream_config

    from corevad_stream import App

    cfg = stream_config([{"name": "lane", "url": "frameless://", "rate": "native"}],
                        metrics={"enabled": True, "port": 0}, store={"path": str(tmp_path / "e.sqlite3")},
                        runtime={"segment_seconds": 0.1})
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        async with App(cfg, backend=ScriptedBackend()) as app:
            assert app.metrics_server is not None
            resp = await client.send(client.build_request(
                "GET", f"http://127.0.0.1:{app.metrics_server.port}/api/stream"), stream=True)

            async def read() -> str:
                async for line in resp.aiter_lines():
                    lines.append(line)
                return "ended"

            reader = asyncio.create_task(read())
            while not any(x.startswith("data: ") for x in lines):  # scores flow: the stream is live
                await asyncio.sleep(0.02)
        ended = await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 10)
    err = capfd.readouterr().err
    assert ended == ["ended"], ended
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
