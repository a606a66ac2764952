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
            # The card shows the camera's latest frame (through the snapshot's encoder, at full size); the
            # camera that never connected shows the placeholder.
            card_frame = _wait(d, "the card's latest frame", lambda d: d.execute_script(
                "const i = document.querySelector('.cam[data-camera=lane] img.frame');"
                "return i && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : false;"))
            door_placeholder = d.find_element(By.CSS_SELECTOR, ".cam[data-camera=door] .frame-none").is_displayed()
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
                    "model": model_pill, "door": door_state, "card_frame": card_frame,
                    "door_placeholder": door_placeholder,
                    "errors": errors, "source": source}

        seen = await asyncio.to_thread(drive)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            stored = (await client.get(f"api/events/{seen['id']}")).json()
            cameras = (await client.get("api/cameras")).json()
    assert seen["marker"] is True and seen["not_reloaded"] is True  # the alert came without a reload
    assert seen["why"] == "A man smashes the shop window." and seen["card"]
    assert seen["thumb"] == 320  # the full-resolution frame, not the model's 32-pixel copy
    assert seen["card_frame"] == [320, 240] and seen["door_placeholder"]
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


LONG = "Explosion020_x264_loading_dock_north"  # wider than a phone's card: it must wrap between its parts
# In the page: where each line of an element's text starts (the characters just before each line break).
_LINE_BREAKS_JS = """
const h = arguments[0], chars = [];
const walk = document.createTreeWalker(h, NodeFilter.SHOW_TEXT);
for (let n = walk.nextNode(); n; n = walk.nextNode()) {
  for (let i = 0; i < n.length; i++) {
    const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
    const box = r.getClientRects()[0];
    if (box) chars.push([n.data[i], box.top]);
  }
}
const before = [];
for (let i = 1; i < chars.length; i++) if (chars[i][1] > chars[i - 1][1] + 2) before.push(chars[i - 1][0]);
return {before, overflow: h.scrollWidth - h.clientWidth};
"""
# The card's chart: the open threshold's y and the highest score point's y in pixels, and their colours.
_THRESHOLD_JS = """
const svg = document.querySelector(arguments[0] + ' svg.spark');
const px = svg.getBoundingClientRect().height / 30;
const thr = svg.querySelector('line.thr'), band = svg.querySelector('rect.thr-band');
const ys = [...svg.querySelectorAll('polyline')].flatMap(
  (p) => p.getAttribute('points').split(' ').map((xy) => Number(xy.split(',')[1])));
return {gap_px: (Math.min(...ys) - Number(thr.getAttribute('y1'))) * px, band: Number(band.getAttribute('height')),
        thr_colour: getComputedStyle(thr).stroke, line_colour: getComputedStyle(svg.querySelector('polyline')).stroke};
"""


async def test_the_page_says_since_when_breaks_lines_at_gaps_and_marks_the_threshold(
        browser: Any, video_factory: Callable[..., Path], tmp_path: Path, artifacts_dir: Path) -> None:
    """Issue 20 item 5 against the real server, store and live feed with cameras described by a double of
    /api/cameras: the open alert's duration grows on its own, a missing stretch of segments splits the line,
    the open threshold (0.999) stands apart from a score of 0.98, an open alert below the close threshold says
    "closing", disarmed/snoozed cameras never read "normal", the monitor is named, a long name wraps between
    its parts on a phone, and the card shows the camera's latest frame (the snapshot encoder) or a placeholder."""
    import time

    import cv2
    from selenium.webdriver.common.by import By

    from corevad_stream.dispatch import encode_jpeg
    from corevad_stream.http import HttpServer, LiveFeed
    from corevad_stream.messages import Message
    from corevad_stream.store import SqliteStore, StoreLocation

    ok, frame = cv2.VideoCapture(str(video_factory("dock.mp4", seconds=1, size=(320, 180)))).read()
    assert ok
    jpeg = encode_jpeg(frame, 80)
    now = time.time()
    store = SqliteStore(tmp_path / "e.sqlite3")
    base = now - 110  # 30 scored segments, 20 missing (dropped), then 50 more up to 10 s ago
    for i in [*range(30), *range(50, 100)]:
        score = 0.98 if i == 20 else (0.37 if i >= 95 else 0.5)
        store.write("score", LONG, {"index": i, "start": base + i, "end": base + i + 1, "score": score,
                                    "label": "x"}, base + i + 1)
    opened = now - 45
    alert = {"id": f"{LONG}-1", "camera": LONG, "active": True, "start_time": opened, "end_time": None,
             "peak_score": 0.98, "explanation": ["Smoke rises from the loading dock."]}
    store.write("events", LONG, {"type": "new", "after": alert}, opened)
    store.close()
    thresholds = {"open_threshold": 0.999, "close_threshold": 0.699, "scored": 80, "model_state": "ok"}
    cameras = {
        LONG: {"name": LONG, "status": "online", "state": "anomalous", "last_score": 0.37, "monitor": "m-east",
               **thresholds},
        "gate": {"name": "gate", "status": "online", "state": "normal", "last_score": 0.1, **thresholds,
                 "arming": {"armed": False, "state": "disarmed", "until": None, "source": "manual"}},
        "yard": {"name": "yard", "status": "online", "state": "normal", "last_score": 0.1, **thresholds,
                 "arming": {"armed": False, "state": "snoozed", "until": now + 600, "source": "snooze"}},
    }
    frames = {LONG: jpeg, "gate": None, "yard": None}
    feed = LiveFeed()
    server = HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"",
                        cameras=lambda: [dict(c) for c in cameras.values()], model=dict,
                        store=StoreLocation(path=tmp_path / "e.sqlite3"), feed=feed,
                        latest_frame=lambda name: frames[name])
    loop = asyncio.get_running_loop()
    async with server:
        url = f"http://127.0.0.1:{server.port}/"
        card = f".cam[data-camera='{LONG}']"

        def drive() -> dict[str, Any]:
            d = browser
            _fresh(d)
            hook = d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
                "window.__cards = []; document.addEventListener('corevad:card', (e) => window.__cards.push("
                "[e.detail.camera, e.detail.element.dataset.camera]));")})
            try:
                d.set_window_size(1280, 900)
                d.get(url)
                _wait(d, "cards", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".cam")) == 3)
                _wait(d, "live", lambda d: d.find_element(By.ID, "conn").text == "live")
                first = _wait(d, "the open alert's duration", lambda d: d.find_element(
                    By.CSS_SELECTOR, f"{card} .open .since.for").text)
                later = _wait(d, "the duration to grow", lambda d: (t := d.find_element(
                    By.CSS_SELECTOR, f"{card} .open .since.for").text) != first and t)
                seen: dict[str, Any] = {"first": first, "later": later}
                seen["open_line"] = d.find_element(By.CSS_SELECTOR, f"{card} .open").text
                seen["alert_head"] = d.find_element(By.CSS_SELECTOR, ".alert .head").text
                seen["runs"] = len(d.find_elements(By.CSS_SELECTOR, f"{card} .spark polyline"))
                seen["ticks"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, f"{card} .taxis .tlab")]
                seen["thr"] = d.execute_script(_THRESHOLD_JS, card)
                seen["meta"] = d.find_element(By.CSS_SELECTOR, f"{card} .meta").text
                seen["states"] = {n: d.find_element(By.CSS_SELECTOR, f".cam[data-camera='{n}'] [data-role=state]").text
                                  for n in cameras}
                seen["monitor"] = d.find_element(By.CSS_SELECTOR, f"{card} [data-role=monitor]").text
                seen["frame"] = _wait(d, "the card's frame", lambda d: d.execute_script(
                    "const i = document.querySelector(arguments[0] + ' img.frame');"
                    "return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : false;", card))
                seen["placeholder"] = d.find_element(
                    By.CSS_SELECTOR, ".cam[data-camera=gate] .frame-none").is_displayed()
                seen["cards"] = d.execute_script("return window.__cards;")
                d.save_screenshot(str(artifacts_dir / "web-page-since-desktop.png"))
                # Re-armed elsewhere: the status message makes the page ask /api/cameras again.
                cameras["gate"]["arming"] = {"armed": True, "state": "armed", "until": None, "source": "manual"}
                asyncio.run_coroutine_threadsafe(feed.send(Message(
                    "status", {"online": True, "state": "online", "reason": None}, camera="gate")), loop).result(5)
                seen["rearmed"] = _wait(d, "gate re-armed", lambda d: (t := d.find_element(
                    By.CSS_SELECTOR, ".cam[data-camera=gate] [data-role=state]").text) != "disarmed" and t)
                # The camera goes away: its card keeps the last picture, marked as such.
                seen["stale_before"] = d.find_element(By.CSS_SELECTOR, f"{card} .frame-stale").is_displayed()
                cameras[LONG]["status"] = "offline"
                asyncio.run_coroutine_threadsafe(feed.send(Message(
                    "status", {"online": False, "state": "offline", "reason": "stream ended"}, camera=LONG)),
                    loop).result(5)
                seen["stale"] = _wait(d, "the stale-picture note", lambda d: (e := d.find_element(
                    By.CSS_SELECTOR, f"{card} .frame-stale")).is_displayed() and e.text)
                d.find_element(By.CSS_SELECTOR, ".alert a[href^='#event=']").click()
                _wait(d, "event view", lambda d: d.find_elements(By.CSS_SELECTOR, "#detail .timeline polyline"))
                seen["detail_runs"] = len(d.find_elements(By.CSS_SELECTOR, "#detail .timeline polyline"))
                seen["detail_ticks"] = len(d.find_elements(By.CSS_SELECTOR, "#detail .taxis .tlab"))
                seen["detail_grid"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#detail .ylab")]
                seen["detail_for"] = d.find_element(By.CSS_SELECTOR, "#detail .since.for").text
                d.set_window_size(390, 844)  # a phone
                d.get(url)
                h3 = _wait(d, "the long name", lambda d: d.find_element(By.CSS_SELECTOR, f"{card} h3"))
                seen["wrap"] = d.execute_script(_LINE_BREAKS_JS, h3)
                seen["page_overflow"] = d.execute_script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
                d.save_screenshot(str(artifacts_dir / "web-page-since-phone.png"))
                seen["errors"] = _console_errors(d)
                d.get("about:blank")
                return seen
            finally:
                d.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", hook)

        seen = await asyncio.to_thread(drive)
    # How long, and since when: "for 45 s" that grows by itself, the clock time and "... ago" beside it.
    assert seen["first"].startswith("for ") and seen["later"].startswith("for "), seen
    assert int(seen["later"].split()[1]) > int(seen["first"].split()[1]) >= 44, seen
    assert "since" in seen["open_line"] and "ago" in seen["open_line"]
    assert "opened" in seen["alert_head"] and "for " in seen["alert_head"] and "ago" in seen["alert_head"]
    # Twenty missing segments split the line in two, under a time axis that ends now.
    assert seen["runs"] == 2 and seen["detail_runs"] == 2
    assert seen["ticks"] == ["−2 min", "−1 min", "now"] and seen["detail_ticks"] >= 3
    assert seen["detail_grid"] == ["0.1", "0.5", "0.9", "0.99"] and seen["detail_for"].startswith("for ")
    # 0.98 is well below the 0.999 line, which has its own colour and a band above it.
    thr = seen["thr"]
    assert thr["gap_px"] >= 6 and thr["band"] > 0 and thr["thr_colour"] != thr["line_colour"], thr
    assert "opens at 0.999" in seen["meta"] and "score 0.37" in seen["meta"]
    # Anomalous at 0.37 (below the close threshold): closing; disarmed and snoozed cameras are not "normal".
    assert seen["states"][LONG] == "closing"
    assert seen["states"]["gate"] == "disarmed" and seen["states"]["yard"].startswith("snoozed until ")
    assert seen["rearmed"] == "normal" and seen["monitor"] == "monitor: m-east"
    # The latest frame, or a placeholder before one exists; every card announced itself once.
    assert seen["frame"] == 320 and seen["placeholder"]
    assert seen["stale_before"] is False and seen["stale"] == "last picture · camera offline"
    assert sorted(seen["cards"]) == sorted([n, n] for n in cameras)
    # On a phone the name wraps only after "_" (never inside a part) and nothing is wider than the screen.
    assert seen["wrap"]["before"] and set(seen["wrap"]["before"]) <= {"_", "-"}, seen["wrap"]
    assert seen["wrap"]["overflow"] <= 0 and seen["page_overflow"] <= 0
    assert seen["errors"] == [], seen["errors"]
