"""Review-API p50/p99 with 100,000 stored alerts, on the sqlite and the PostgreSQL event store (issue 19).

For each backend: fill the store with N ended alerts (their new + end events) over 20 cameras and 30 days
ending now, plus two hours of per-second scores for every camera (around now), through the store's own SQL;
serve it with the monitor's HTTP server (corevad_stream/http.py, uvicorn) on 127.0.0.1 and time sequential
requests from one client per backend (httpx, keep-alive) on three routes: the alerts list (a camera's page
since a time), one alert with its score curve, and a camera's scores window (the last 5 minutes). Both
backends are served at once and timed in alternating rounds of 25 requests, so other work on a shared
machine slows both alike.

PostgreSQL: a throwaway server from corevad_stream.testing.postgres (Debian's postgresql, run as the
postgres user under root; fsync off, which matters to writes, not to these reads), or --url with the
password in $COREVAD_BENCH_PG_PASSWORD for a server of your own (the tool creates its tables there).

    .venv/bin/python tools/bench_store_api.py [--alerts 100000] [--requests 500] [--backend sqlite postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from corevad_stream.http import HttpServer, LiveFeed
from corevad_stream.store import PostgresStore, SqliteStore, StoreLocation, open_store

CAMERAS = 20
SCORE_SECONDS = 3600


def _alerts(n: int, now: float) -> Iterator[tuple[dict[str, Any], float]]:
    """(event, time) pairs: each alert's new and end, oldest first, the newest ending a minute before now."""
    rng = random.Random(0)
    span = 30 * 86400
    for i in range(n):
        cam = f"cam{i % CAMERAS}"
        start = now - span + i * (span / n) - 60
        a = {"id": f"{cam}-run-{i}", "camera": cam, "active": False, "start_time": start, "end_time": start + 40,
             "start_segment": i, "end_segment": i + 40, "peak_segment": i + 3, "peak_score": rng.random(),
             "score": 0.1, "explanation": ["A man climbs over the fence."], "end_reason": "score below close threshold"}
        yield {"type": "new", "before": None, "after": {**a, "active": True, "end_time": None}}, start
        yield {"type": "end", "before": None, "after": a}, start + 40


def _scores(now: float) -> Iterator[tuple[str, int, float, float, float, int]]:
    """An hour before `now` and an hour after: the scores route reads the 5 minutes before the request, which
    comes minutes after the fill began."""
    for c in range(CAMERAS):
        for k in range(2 * SCORE_SECONDS):
            t = now - SCORE_SECONDS + k
            yield f"cam{c}", k, t, t + 1.0, 0.2, 0


def fill(at: StoreLocation, n: int, now: float) -> None:
    """The store's own statements, in one transaction per backend (one commit per row would take minutes)."""
    from corevad_stream.store._base import alert_values

    store = open_store(at)
    if isinstance(store, SqliteStore):
        with store._db:  # noqa: SLF001 - one transaction for the bulk load
            for event, t in _alerts(n, now):
                store._alert(event, t)  # noqa: SLF001
            store._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",  # noqa: SLF001
                                  list(_scores(now)))
    else:
        assert isinstance(store, PostgresStore)

        def load(conn: Any) -> None:
            events = list(_alerts(n, now))
            with conn.cursor() as cur:
                for k in range(0, len(events), 10_000):  # ends after news: the same upserts as live writes
                    chunk = events[k:k + 10_000]
                    for event, t in chunk:
                        PostgresStore._alert(cur, (*alert_values(event["after"]), t),  # noqa: SLF001
                                             (event["after"]["id"], event["type"], t, json.dumps(event)))
                cur.executemany("INSERT INTO scores VALUES (%s, %s, %s, %s, %s, %s)", list(_scores(now)))

        with store._write_lock:  # noqa: SLF001 - the bulk load pipelines its statements
            conn = store._writer()  # noqa: SLF001
            with conn.pipeline(), conn.transaction():
                load(conn)
            conn.execute("ANALYZE")
    store.close()


def _routes(client: httpx.AsyncClient, n: int, now: float, rng: random.Random) -> dict[str, Callable[[], Any]]:
    # The newest 100 alerts: within the last hour, so their score curves are there (the costly case).
    recent = [f"cam{i % CAMERAS}-run-{i}" for i in range(n - 100, n)]
    return {
        "GET /api/events?camera&since&limit=50": lambda: client.get(
            "/api/events", params={"camera": f"cam{rng.randrange(CAMERAS)}",
                                   "since": now - 30 * 86400 + rng.random() * 29 * 86400, "limit": 50}),
        "GET /api/events/{id} (with scores)": lambda: client.get(f"/api/events/{rng.choice(recent)}"),
        "GET /api/cameras/{name}/scores (5 min)": lambda: client.get(
            f"/api/cameras/cam{rng.randrange(CAMERAS)}/scores"),
    }


async def measure(stores: dict[str, StoreLocation], n: int, requests: int, now: float
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """Every backend served at once; each route timed in rounds of 25 requests that alternate between the
    backends, so a machine busy with other work slows both alike (this one is shared)."""
    async with AsyncExitStack() as stack:
        routes: dict[str, dict[str, Callable[[], Any]]] = {}
        for backend, at in stores.items():
            server = await stack.enter_async_context(HttpServer(
                host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict, store=at,
                feed=LiveFeed()))
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30))
            routes[backend] = _routes(client, n, now, random.Random(1))
        times: dict[str, dict[str, list[float]]] = {b: {} for b in stores}
        for name in next(iter(routes.values())):
            for backend in stores:
                for _ in range(20):
                    (await routes[backend][name]()).raise_for_status()  # warm-up: connections, caches
            for _ in range(0, requests, 25):
                for backend in stores:
                    for _ in range(25):
                        t = time.perf_counter()
                        response = await routes[backend][name]()
                        times[backend].setdefault(name, []).append(time.perf_counter() - t)
                        response.raise_for_status()
                        if not response.json():
                            raise SystemExit(f"{backend} {name}: an empty answer; the fill does not match the routes")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for backend, per_route in times.items():
        out[backend] = {}
        for name, seconds in per_route.items():
            ms = np.array(seconds) * 1000
            out[backend][name] = {"p50_ms": round(float(np.percentile(ms, 50)), 2),
                                  "p99_ms": round(float(np.percentile(ms, 99)), 2)}
    return out


@contextmanager
def postgres(url: str | None, work: Path) -> Iterator[StoreLocation]:
    if url is not None:
        yield StoreLocation(url=url, password=os.environ.get("COREVAD_BENCH_PG_PASSWORD"))
        return
    from corevad_stream.testing.postgres import PostgresServer

    server = PostgresServer(work / "pg")
    try:
        server.start()
        yield StoreLocation(url=server.url, password=server.password)
    finally:
        server.remove()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--backend", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    ap.add_argument("--url", help="an existing PostgreSQL database (password in $COREVAD_BENCH_PG_PASSWORD)")
    args = ap.parse_args()
    results: dict[str, Any] = {"alerts": args.alerts, "requests_per_route": args.requests}
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        stores: dict[str, StoreLocation] = {}
        for backend in args.backend:
            at = stack.enter_context(postgres(args.url, Path(tmp)) if backend == "postgres"
                                     else _sqlite(Path(tmp) / "events.sqlite3"))
            t0 = time.perf_counter()
            fill(at, args.alerts, now)
            fill_s = time.perf_counter() - t0
            store = open_store(at)
            results[backend] = {"alerts_stored": store.count("alerts"), "store_mb": round(store.size_bytes() / 1e6, 1),
                                "fill_s": round(fill_s, 1)}
            store.close()
            stores[backend] = at
            print(json.dumps({backend: results[backend]}), flush=True)
        latency = asyncio.run(measure(stores, args.alerts, args.requests, now))
    for backend in stores:
        results[backend]["latency"] = latency[backend]
    print(json.dumps(results, indent=1))
    return 0


@contextmanager
def _sqlite(path: Path) -> Iterator[StoreLocation]:
    yield StoreLocation(path=path)


if __name__ == "__main__":
    raise SystemExit(main())
