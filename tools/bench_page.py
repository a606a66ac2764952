"""Alert-to-page latency: how long after the runtime emits a new alert the review page shows it.

Runs the monitor (corevad_stream.App) with N frame-less cameras at native rate and a scripted model that
turns each camera anomalous for a few segments every `--period` segments, serves the page, and opens it in
headless Debian chromium (Selenium). A sink records the wall time each `new` alert event reaches the
sinks; the page stamps each alert's element with the time it rendered it (data-shown-at, performance
clock). Same machine, same clock: latency = shown - emitted. Prints p50/p99/max as JSON.

    .venv/bin/python tools/bench_page.py [--cameras 4] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corevad.models.base import Clip
from corevad_stream import App
from corevad_stream.config import config_from_dict
from corevad_stream.messages import Message

ANOMALOUS = "Anomalous scenes.\nA man smashes the shop window."
NORMAL = "Normal scenes.\nPeople walk past the shop."


class PeriodicBackend:
    """Anomalous for 3 segments out of every `period`, each camera at its own phase."""

    name = "periodic"

    def __init__(self, period: int) -> None:
        self.period = period

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        return [ANOMALOUS if (c.index + 7 * hash(c.source)) % self.period < 3 else NORMAL for c in clips]

    def close(self) -> None:
        pass


class EmitTimes:
    """A sink: the wall time each new alert reached the sinks."""

    name = "emit-times"

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    async def __aenter__(self) -> EmitTimes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def send(self, message: Message) -> None:
        payload = message.json_payload()  # a typed record on its way out: its wire form, as the page gets it
        if message.kind == "events" and isinstance(payload, dict) and payload["type"] == "new":
            self.times[payload["after"]["id"]] = time.time()


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


async def run(cameras: int, seconds: float, segment_s: float, period: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="corevad-bench-page-"))
    cfg = config_from_dict({
        "cameras": [{"name": f"cam{i}", "url": "frameless://", "rate": "native"} for i in range(cameras)],
        "metrics": {"enabled": True, "port": 0}, "store": {"path": str(state / "events.sqlite3")},
        "refinement": {"smooth_length": 1}, "alerts": {"snapshot": False, "close_after_s": 0, "cooldown_s": 0},
        "runtime": {"segment_seconds": segment_s, "state_dir": str(state)},
    })
    emitted = EmitTimes()
    async with App(cfg, backend=PeriodicBackend(period), sinks=[emitted]) as app:
        assert app.metrics_server is not None
        driver = await asyncio.to_thread(browser)
        try:
            await asyncio.to_thread(driver.get, f"http://127.0.0.1:{app.metrics_server.port}/")
            for _ in range(200):  # wait for the live stream, then start counting
                if await asyncio.to_thread(lambda: driver.find_element("id", "conn").text) == "live":
                    break
                await asyncio.sleep(0.05)
            t0 = time.time()
            await asyncio.sleep(seconds)
            shown = await asyncio.to_thread(driver.execute_script,
                                            "return [...document.querySelectorAll('.alert')].map("
                                            "e => [e.dataset.id, Number(e.dataset.shownAt)]);")
        finally:
            await asyncio.to_thread(driver.quit)
    lat = [shown_ms / 1000 - emitted.times[i] for i, shown_ms in shown if emitted.times.get(i, 0) >= t0]
    missing = [i for i, t in emitted.times.items() if t >= t0 and i not in dict(shown)]
    a = np.asarray(lat)
    return {"cameras": cameras, "seconds": seconds, "segment_s": segment_s, "alerts_measured": len(lat),
            "alerts_not_shown": len(missing), "latency_s": {
                "p50": round(float(np.percentile(a, 50)), 4) if len(a) else None,
                "p99": round(float(np.percentile(a, 99)), 4) if len(a) else None,
                "max": round(float(a.max()), 4) if len(a) else None}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--segment-s", type=float, default=0.25, help="segment length (alerts come faster when short)")
    p.add_argument("--period", type=int, default=20, help="segments between a camera's anomalous bursts")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.cameras, args.seconds, args.segment_s, args.period)), indent=2))


if __name__ == "__main__":
    main()
