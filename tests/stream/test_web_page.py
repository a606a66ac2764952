"""The review page in a real headless chromium against a running monitor (real video file, real HTTP server,
real event store): cameras shown, a new alert appears without reload, its snapshot loads, acknowledging
works, the event view draws the timeline, no console errors, phone layout; screenshots saved as artifacts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from stream_doubles import ANOMALOUS, NORMAL, ScriptedBackend, stream_config

from corevad_stream import App

pytestmark = pytest.mark.slow


def _console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _fresh(driver: Any) -> None:
    """A blank tab and an empty console log (the browser is shared by the tests of this session)."""
    driver.get("about:blank")
    driver.get_log("browser")


def _wait(driver: Any, what: str, condition: Callable[[Any], Any], timeout: float = 20.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page redraws the camera grid on every score: an element found by one poll can be gone when its
    # text is read, which only means "look again".
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message=what)


async def test_the_page_shows_cameras_live_alerts_snapshots_and_acknowledges(
        browser: Any, video_factory: Callable[..., Path], tmp_path: Path, artifacts_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    go = threading.Event()  # the scene turns anomalous when the test says so, after the page is up
    backend = ScriptedBackend(lambda clip: ANOMALOUS if go.is_set() else NORMAL)
    video = video_factory("lane.mp4", seconds=40, size=(320, 240))
    cams = [{"name": "lane", "url": str(video)},
            {"name": "door", "url": "rtsp://admin:hunter2@127.0.0.1:9/x"}]  # never connects: offline
    cfg = stream_config(cams, metrics={"enabled": True, "port": 0}, store={"path": str(tmp_path / "e.sqlite3")},
                        refinement={"smooth_length": 1}, alerts={"snapshot": True, "close_after_s": 0,
                                                                 "cooldown_s": 0})
    async with App(cfg, backend=backend) as app:
        assert app.metrics_server is not None
        base = f"http://127.0.0.1:{app.metrics_server.port}/"

        def drive() -> dict[str, Any]:
            d = browser
            _fresh(d)
            d.set_window_size(1280, 900)
            d.get(base)
            _wait(d, "camera cards", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".cam")) == 2)
            _wait(d, "live stream", lambda d: d.find_element(By.ID, "conn").text == "live")
            _wait(d, "a scored segment", lambda d: "scored" in d.find_element(
                By.CSS_SELECTOR, ".cam[data-camera=lane] .meta").text and d.find_elements(
                By.CSS_SELECTOR, ".cam[data-camera=lane] .spark polyline"))
            assert d.find_elements(By.CSS_SELECTOR, ".alert") == []
            marker = d.execute_script("window.__notReloaded = true; return window.__notReloaded;")
            go.set()
            _wait(d, "a new alert in the feed", lambda d: d.find_elements(By.CSS_SELECTOR, ".alert.active"))
            why = _wait(d, "the alert's explanation", lambda d: d.find_element(
                By.CSS_SELECTOR, ".alert.active .why").text)
            anomalous_card = _wait(d, "camera highlighted", lambda d: d.find_elements(
                By.CSS_SELECTOR, ".cam.anomalous[data-camera=lane]"))
            thumb_ok = _wait(d, "the snapshot loads", lambda d: d.execute_script(
                "const i = document.querySelector('.alert .thumb');"
                "return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : false;"))
            still = d.execute_script("return window.__notReloaded === true;")
            alert_id = _wait(d, "the alert's id", lambda d: d.find_element(By.CSS_SELECTOR, ".alert").get_attribute(
                "data-id"))
            _wait(d, "Acknowledge clicked", lambda d: d.find_element(By.CSS_SELECTOR, ".alert button.ack").click() or 1)
            _wait(d, "acknowledged", lambda d: d.find_elements(By.CSS_SELECTOR, ".alert.acked .pill.good"))
            _wait(d, "event link clicked", lambda d: d.find_element(
                By.CSS_SELECTOR, ".alert a[href^='#event=']").click() or 1)
            _wait(d, "event view", lambda d: d.find_elements(By.CSS_SELECTOR, "#detail .timeline polyline"))
            detail = {
                "marks": len(d.find_elements(By.CSS_SELECTOR, "#detail .timeline line.mark.open")),
                "thresholds": len(d.find_elements(By.CSS_SELECTOR, "#detail .timeline line.thr")),
                "big": d.execute_script("const i = document.querySelector('#detail img.big');"
                                        "return i ? i.naturalWidth : 0;"),
                "said": [li.text for li in d.find_elements(By.CSS_SELECTOR, "#detail ol li")],
            }
            d.save_screenshot(str(artifacts_dir / "web-page-desktop.png"))
            d.set_window_size(390, 844)  # a phone
            d.get(base)
            _wait(d, "phone layout", lambda d: d.find_elements(By.CSS_SELECTOR, ".alert"))
            model_pill = _wait(d, "model state", lambda d: d.find_element(By.ID, "model").text)
            door_state = _wait(d, "door's state", lambda d: d.find_element(
                By.CSS_SELECTOR, ".cam[data-camera=door] [data-role=state]").text)
            overflow = d.execute_script("return document.documentElement.scrollWidth - "
                                        "document.documentElement.clientWidth;")
            d.save_screenshot(str(artifacts_dir / "web-page-phone.png"))
            errors, source = _console_errors(d), d.page_source
            d.get("about:blank")  # leave before the monitor stops: its live stream ends with the server
            return {"marker": marker, "why": why, "card": bool(anomalous_card), "thumb": thumb_ok,
                    "not_reloaded": still, "id": alert_id, "detail": detail, "overflow": overflow,
                    "model": model_pill, "door": door_state,
                    "errors": errors, "source": source}

        seen = await asyncio.to_thread(drive)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            stored = (await client.get(f"api/events/{seen['id']}")).json()
            cameras = (await client.get("api/cameras")).json()
    assert seen["marker"] is True and seen["not_reloaded"] is True  # the alert came without a reload
    assert seen["why"] == "A man smashes the shop window." and seen["card"]
    assert seen["thumb"] == 320  # the full-resolution frame, not the model's 32-pixel copy
    assert stored["acknowledged_at"] and stored["snapshot"]  # acknowledged and snapshot stored server-side
    assert seen["detail"]["marks"] == 1 and seen["detail"]["thresholds"] == 2 and seen["detail"]["big"] == 320
    assert seen["detail"]["said"][0] == "A man smashes the shop window."
    assert seen["model"] == "model ok" and seen["door"] == "unknown"  # never scored: not "normal"
    assert seen["overflow"] <= 0  # nothing wider than a phone screen
    assert seen["errors"] == [], seen["errors"]
    assert "hunter2" not in seen["source"] and "hunter2" not in json.dumps(cameras)
    assert (artifacts_dir / "web-page-desktop.png").stat().st_size > 10_000


def test_a_replay_writes_the_same_page_statically_with_gt_spans(browser: Any, shared_data: Path, tmp_path: Path,
                                                                artifacts_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    from corevad_stream.cli import main

    d = shared_data / "ucf_crime"
    page = tmp_path / "replay.html"
    rc = main(["replay", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"),
               "--responses", str(d / "VLM_responses_LRC_ucf.json"), "--half", "test", "--limit", "12",
               "--out", str(tmp_path / "out"), "--html", str(page)])
    assert rc == 0
    alerts = [json.loads(line) for line in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert alerts  # the first 12 test videos include anomalous ones the replay alerts on
    _fresh(browser)
    browser.set_window_size(1280, 900)
    browser.get(page.as_uri())  # no server: everything is inside the file
    _wait(browser, "videos", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".cam")) == 12)
    shown = browser.find_elements(By.CSS_SELECTOR, ".alert")
    first = alerts[0]
    browser.find_element(By.CSS_SELECTOR, f".cam[data-camera='{first['video']}']").click()
    _wait(browser, "filtered", lambda d: all(e.get_attribute("data-id").startswith(first["video"])
                                             for e in d.find_elements(By.CSS_SELECTOR, ".alert")))
    browser.find_element(By.CSS_SELECTOR, ".alert a[href^='#event=']").click()
    _wait(browser, "event view", lambda d: d.find_elements(By.CSS_SELECTOR, "#detail .timeline polyline"))
    gt_rects = browser.find_elements(By.CSS_SELECTOR, "#detail .timeline rect.gt")
    said = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#detail ol li")]
    browser.save_screenshot(str(artifacts_dir / "web-page-replay.png"))
    errors = _console_errors(browser)
    assert len(shown) == len(alerts)  # every alert of the replay, none invented
    assert gt_rects and said == first["explanation"]
    assert browser.find_elements(By.CSS_SELECTOR, "button.ack") == []  # nothing to acknowledge in a replay
    assert errors == [], errors


async def test_a_page_of_another_origin_cannot_acknowledge_even_with_cached_credentials(
        browser: Any, tmp_path: Path) -> None:
    """Issue 18 item 8 in a real browser: a cross-origin form POST and a no-cors fetch both reach the server
    (with the basic-auth credentials the browser cached) and are refused; the page's own Acknowledge works, and
    its "Older alerts" pages by id (before=) through the whole history."""
    import http.server

    from corevad_stream.http import HttpServer, LiveFeed
    from corevad_stream.store import SqliteStore, StoreLocation

    store = SqliteStore(tmp_path / "e.sqlite3")
    for i in range(60):  # more than one page of 50
        a = {"id": f"lane-r-{i}", "camera": "lane", "active": False, "start_time": 1.8e9 + i, "end_time": 1.8e9 + i,
             "explanation": ["x"]}
        store.write("events", "lane", {"type": "end", "after": a}, 1.8e9 + i)
    store.close()
    server = HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict,
                        store=StoreLocation(path=tmp_path / "e.sqlite3"), feed=LiveFeed(), username="op",
                        password="s3cret")
    async with server:
        target = f"http://127.0.0.1:{server.port}"
        attacker = tmp_path / "attacker"
        attacker.mkdir()
        (attacker / "index.html").write_text(f"""<!doctype html><body>
<form id="f" method="POST" action="{target}/api/events/lane-r-0/ack"><input name="x" value="1"></form>
<script>
fetch("{target}/api/events/lane-r-1/ack", {{method: "POST", mode: "no-cors", credentials: "include", body: "{{}}",
      headers: {{"Content-Type": "text/plain"}}}})
  .then(() => {{ document.title = "fetched"; }}, () => {{ document.title = "fetch failed"; }});
</script></body>""")

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **k: Any) -> None:
                super().__init__(*a, directory=str(attacker), **k)

            def log_message(self, *a: Any) -> None:
                pass

        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)  # another port: another origin
        threading.Thread(target=evil.serve_forever, daemon=True).start()

        def drive() -> dict[str, Any]:
            from selenium.webdriver.common.by import By

            d = browser
            _fresh(d)
            d.get(f"http://op:s3cret@127.0.0.1:{server.port}/api/cameras")  # the browser caches the credentials
            d.get(f"http://127.0.0.1:{evil.server_address[1]}/")
            _wait(d, "the no-cors fetch settled", lambda d: d.title in ("fetched", "fetch failed"))
            fetched = d.title
            d.execute_script("document.getElementById('f').submit();")
            _wait(d, "the form's answer", lambda d: d.current_url.startswith(target))
            form_answer = _wait(d, "the form's answer text", lambda d: d.find_element(By.TAG_NAME, "body").text)
            d.get_log("browser")  # the refused requests above logged errors; what follows is the page's own
            d.get(f"{target}/")  # the page itself, same origin, with the cached credentials
            _wait(d, "the first page", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".alert")) == 50)
            d.find_element(By.ID, "more").click()
            _wait(d, "the second page", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".alert")) == 60)
            listed = [e.get_attribute("data-id") for e in d.find_elements(By.CSS_SELECTOR, ".alert")]
            more_hidden = d.find_element(By.ID, "more").get_attribute("hidden") is not None
            _wait(d, "Acknowledge clicked", lambda d: d.find_element(
                By.CSS_SELECTOR, ".alert[data-id='lane-r-2'] button.ack").click() or 1)
            _wait(d, "acknowledged", lambda d: d.find_elements(By.CSS_SELECTOR, ".alert.acked[data-id='lane-r-2']"))
            errors = _console_errors(d)
            d.get("about:blank")
            return {"fetched": fetched, "form": form_answer, "errors": errors, "listed": listed,
                    "more_hidden": more_hidden}

        try:
            seen = await asyncio.to_thread(drive)
        finally:
            evil.shutdown()
        async with httpx.AsyncClient(base_url=target, auth=("op", "s3cret"), timeout=10) as client:
            acked = {i: (await client.get(f"/api/events/lane-r-{i}")).json()["acknowledged_at"] for i in range(3)}
    # The fetch went out; its answer is blocked too (Cross-Origin-Resource-Policy), so the promise rejects.
    assert seen["fetched"] == "fetch failed" and server.cross_site_refused == 2
    assert "cross-site request refused" in seen["form"], seen["form"]  # past basic auth: credentials were sent
    assert acked[0] is None and acked[1] is None and acked[2]  # only the page's own click acknowledged
    assert seen["listed"] == [f"lane-r-{i}" for i in range(59, -1, -1)] and seen["more_hidden"]  # newest first, once
    assert seen["errors"] == [], seen["errors"]


async def test_the_page_says_when_the_store_disk_fails_and_when_it_is_back(
        browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from corevad_stream.testing.fs_faults import fill, small_tmpfs

    with small_tmpfs(tmp_path / "state", size_kb=8192) as state:
        cfg = stream_config([{"name": "gate", "url": "frameless://", "rate": "native"}],
                            metrics={"enabled": True, "port": 0}, refinement={"smooth_length": 1},
                            runtime={"segment_seconds": 0.1, "state_dir": str(state)})
        async with App(cfg, backend=ScriptedBackend(lambda clip: NORMAL)) as app:
            assert app.metrics_server is not None
            base = f"http://127.0.0.1:{app.metrics_server.port}/"
            filler = fill(state)
            for _ in range(600):  # scores keep coming: the store's writes fail soon
                if app.stats()["store"]["state"] == "failing":
                    break
                await asyncio.sleep(0.05)
            assert app.stats()["store"]["state"] == "failing"

            def drive() -> tuple[str, bool]:
                _fresh(browser)
                browser.get(base)
                pill = _wait(browser, "the storage pill", lambda d: d.find_element(By.ID, "storage").text)
                filler.unlink()  # space is back: the page's next poll (10 s) hides the pill
                gone = _wait(browser, "the pill to go", lambda d: not d.find_element(By.ID, "storage").is_displayed(),
                             timeout=60)
                return pill, bool(gone)

            pill, gone = await asyncio.to_thread(drive)
            assert "store failing" in pill and "waiting" in pill and gone
            assert app.stats()["store"]["state"] == "ok" and app.stats()["store"]["dropped"] == 0
            assert _console_errors(browser) == []
