"""Alert latency while the review API takes a burst of reads (issue 18, item 6): p50/p99 without and with it.

A running monitor (the real App: video-file cameras at their native rate with snapshots on, a scripted model
that answers instantly and turns anomalous every few segments, the event store, the HTTP server, MQTT to a
private Mosquitto) whose event store already holds --alerts alerts. Alert latency = the MQTT subscriber's
receipt of a `new` event - the end of the segment that opened it - the model's time (as in
tools/bench_stream.py). Phase 1 measures it quietly; phase 2 while --readers concurrent clients in another
process (httpx, keep-alive) loop over /api/events reads: a page, a camera's page, limit=1000, offset=9000
(requests every version of the API accepts). The readers' answers (200 / 503 / other) and their latency are
reported too.

    .venv/bin/python tools/bench_api_burst.py [--alerts 100000] [--readers 100] [--seconds 40] [--cameras 4]

Run it with PYTHONPATH pointing at another checkout to measure that version's App (the before/after figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from corevad.models.base import Clip
from corevad_stream import App, config_from_dict
from corevad_stream.store import SqliteStore
from corevad_stream.testing import free_port

_READERS = r"""
import asyncio, json, random, sys, time
import httpx

async def main(base, readers, seconds):
    codes, lat = {}, []
    stop = time.monotonic() + seconds
    rng = random.Random(0)
    queries = [{"limit": 50}, {"camera": "hist3", "limit": 50}, {"limit": 1000}, {"offset": 9000, "limit": 50}]
    limits = httpx.Limits(max_connections=readers, max_keepalive_connections=readers)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        async def reader():
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    r = await client.get("/api/events", params=rng.choice(queries))
                    key = str(r.status_code)
                    if r.status_code == 503:
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                codes[key] = codes.get(key, 0) + 1
                lat.append(time.perf_counter() - t)
        await asyncio.gather(*(reader() for _ in range(readers)))
    lat.sort()
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None
    print(json.dumps({"requests": len(lat), "codes": codes, "p50_ms": q(0.5), "p99_ms": q(0.99)}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


class PeriodicBackend:
    """Instant answers: anomalous for segments where index % period == hot (one alert per period)."""

    name = "periodic"

    def __init__(self, period: int) -> None:
        self.period = period

    def answer(self, clips: list[Clip]) -> list[str]:
        return ["Anomalous scenes.\nA person falls down." if c.index % self.period == 1
                else "Normal scenes.\nA quiet corridor." for c in clips]

    def close(self) -> None:
        pass


def fill_store(path: Path, n: int) -> None:
    """n ended alerts of 20 other cameras over 30 days, in one transaction (the bulk load of tools/bench_api.py)."""
    store = SqliteStore(path)
    rng = random.Random(0)
    t0 = time.time() - 31 * 86400
    with store._db:  # noqa: SLF001 - one transaction for the bulk load
        for i in range(n):
            cam = f"hist{i % 20}"
            start = t0 + i * (30 * 86400 / n)
            a = {"id": f"{cam}-old-{i}", "camera": cam, "active": False, "start_time": start, "end_time": start + 40,
                 "start_segment": i, "end_segment": i + 40, "peak_segment": i + 3, "peak_score": rng.random(),
                 "score": 0.1, "explanation": ["A man climbs over the fence."], "end_reason": "score below close"}
            store._alert({"type": "new", "before": None, "after": {**a, "active": True}}, start)  # noqa: SLF001
            store._alert({"type": "end", "before": None, "after": a}, start + 40)  # noqa: SLF001
    store.close()


def _stats(lat: list[float]) -> dict[str, Any]:
    if len(lat) < 2:
        return {"alerts": len(lat), "error": "too few alerts"}
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"alerts": len(lat), "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(max(lat) * 1000, 1)}


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import aiomqtt

    clip = work / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
                    "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "15",
                    str(clip)], check=True)
    store_path = work / "events.sqlite3"
    t = time.perf_counter()
    fill_store(store_path, args.alerts)
    build_s = time.perf_counter() - t
    port = free_port()
    mosq = shutil.which("mosquitto")
    if mosq is None:
        raise SystemExit("mosquitto is not installed (tools/setup.sh)")
    broker = subprocess.Popen([mosq, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("mosquitto did not start within 10 s") from None
                await asyncio.sleep(0.05)
        cams = [{"name": f"cam{k}", "url": str(clip), "rate": "native", "loop": True} for k in range(args.cameras)]
        cfg = config_from_dict({
            "cameras": cams, "metrics": {"enabled": True, "port": 0},
            "refinement": {"use_features": False, "smooth_length": 1},
            "alerts": {"snapshot": True, "close_after_s": 0, "cooldown_s": 0},
            "store": {"path": str(store_path)}, "runtime": {"frame_size": 64},
            "mqtt": {"host": "127.0.0.1", "port": port, "prefix": "burst",
                     "outbox": {"path": str(work / "outbox.sqlite3")}},
        })
        phase = {"name": "warm-up"}
        lat: dict[str, list[float]] = {"quiet": [], "burst": []}
        async with aiomqtt.Client("127.0.0.1", port) as sub:
            await sub.subscribe("burst/events", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    now = time.time()
                    ev = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if ev["type"] == "new" and phase["name"] in lat and "timing" in ev:
                        lat[phase["name"]].append(now - ev["timing"]["segment_end"] - ev["timing"]["model_s"])

            task = asyncio.create_task(collect())
            async with App(cfg, backend=PeriodicBackend(args.period)) as app:
                assert app.metrics_server is not None
                base = f"http://127.0.0.1:{app.metrics_server.port}"
                await asyncio.sleep(5.0)
                phase["name"] = "quiet"
                await asyncio.sleep(args.seconds)
                phase["name"] = "burst"
                readers = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _READERS, base, str(args.readers), str(args.seconds),
                    stdout=asyncio.subprocess.PIPE)
                out, _ = await asyncio.wait_for(readers.communicate(), args.seconds + 120)
                phase["name"] = "done"
            await asyncio.sleep(1.0)
            task.cancel()
        return {"alerts_stored": args.alerts, "store_build_s": round(build_s, 1), "cameras": args.cameras,
                "readers": args.readers, "seconds_per_phase": args.seconds,
                "alert_latency_quiet": _stats(lat["quiet"]), "alert_latency_burst": _stats(lat["burst"]),
                "api_burst": json.loads(out.decode() or "null")}
    finally:
        broker.terminate()
        broker.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000, help="Alerts already in the event store.")
    ap.add_argument("--readers", type=int, default=100, help="Concurrent API readers in the burst.")
    ap.add_argument("--seconds", type=float, default=40.0, help="Length of each phase (quiet, burst).")
    ap.add_argument("--cameras", type=int, default=4, help="Live cameras (a looping 320x240 file each).")
    ap.add_argument("--period", type=int, default=3, help="One alert per this many segments per camera.")
    args = ap.parse_args()
    for name in ("alerts", "readers", "cameras", "period"):
        if getattr(args, name) < 1:
            print(f"--{name} must be >= 1", file=sys.stderr)
            return 2
    if not args.seconds > 0:
        print("--seconds must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
