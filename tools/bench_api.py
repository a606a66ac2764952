"""Review-API latency with a large history: p50/p99 of the API routes over 100,000 stored alerts.

Builds an event store with N alerts (and their lifecycle events) over 20 cameras and 30 days, serves it
with the monitor's HTTP server (corevad_stream/http.py, uvicorn) on 127.0.0.1, and times sequential
requests from one client (httpx, keep-alive) for: a filtered page of events, one event with its score
curve, and the camera list.

    .venv/bin/python tools/bench_api.py [--alerts 100000] [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from corevad_stream.http import HttpServer, LiveFeed
from corevad_stream.store import SqliteStore, StoreLocation


def build(path: Path, n: int) -> list[str]:
    store = SqliteStore(path)
    rng = random.Random(0)
    ids = []
    t0 = 1.8e9
    with store._db:  # noqa: SLF001 - one transaction for the bulk load
        for i in range(n):
            cam = f"cam{i % 20}"
            start = t0 + i * (30 * 86400 / n)
            a = {"id": f"{cam}-run-{i}", "camera": cam, "active": False, "start_time": start,
                 "end_time": start + 40, "start_segment": i, "end_segment": i + 40, "peak_segment": i + 3,
                 "peak_score": rng.random(), "score": 0.1, "explanation": ["A man climbs over the fence."],
                 "end_reason": "score below close threshold"}
            store._alert({"type": "new", "before": None, "after": {**a, "active": True}}, start)  # noqa: SLF001
            store._alert({"type": "end", "before": None, "after": a}, start + 40)  # noqa: SLF001
            ids.append(a["id"])
        for k in range(20_000):  # scores around the last alerts
            store._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",  # noqa: SLF001
                              ("cam0", k, t0 + 30 * 86400 - 20_000 + k, t0 + 30 * 86400 - 20_000 + k + 1, 0.2, 0))
    store.close()
    return ids


async def measure(path: Path, ids: list[str], requests: int) -> dict[str, dict[str, float]]:
    server = HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict,
                        store=StoreLocation(path=path), feed=LiveFeed())
    rng = random.Random(1)
    out: dict[str, dict[str, float]] = {}
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
        routes = {
            "GET /api/events?camera&since&limit=50": lambda: client.get(
                "/api/events", params={"camera": f"cam{rng.randrange(20)}", "since": 1.8e9 + rng.random() * 2e6,
                                       "limit": 50}),
            "GET /api/events?offset=5000&limit=50": lambda: client.get("/api/events",
                                                                       params={"offset": 5000, "limit": 50}),
            "GET /api/events/{id} (with scores)": lambda: client.get(f"/api/events/{rng.choice(ids)}"),
            "GET /api/cameras": lambda: client.get("/api/cameras"),
        }
        for name, call in routes.items():
            for _ in range(20):
                (await call()).raise_for_status()  # warm-up
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                (await call()).raise_for_status()
                times.append(time.perf_counter() - t)
            ms = np.array(times) * 1000
            out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 2),
                         "p99_ms": round(float(np.percentile(ms, 99)), 2)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.sqlite3"
        t0 = time.perf_counter()
        ids = build(path, args.alerts)
        build_s = time.perf_counter() - t0
        size = path.stat().st_size
        res = asyncio.run(measure(path, ids, args.requests))
    print(json.dumps({"alerts": args.alerts, "store_mb": round(size / 1e6, 1), "build_s": round(build_s, 1),
                      "latency": res}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
