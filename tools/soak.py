"""Soak: the whole monitor for an hour (or --minutes), recording RSS, open fds, threads and Python heap over time,
with tracemalloc snapshots diffed to say what grows.

    .venv/bin/python tools/soak.py --out /work/soak/run1              # 60 minutes, 3 cameras
    .venv/bin/python tools/soak.py --minutes 5 --out /tmp/soak-short  # a quick look

Real parts: a private Mosquitto (MQTT sink with its outbox), the event store with snapshots, the HTTP server
(API, page, /metrics) polled by a client every few seconds plus one server-sent-events client that stays
connected, the plain stats line of `run`, and looping 640x480 H.264 file cameras at native rate through the
real decode / ring / segment / batch / scoring path. Only the model is replaced (its memory is not the
runtime's): an in-process backend answers instantly, "Anomalous" for 20 of every 90 segments of each camera,
so alerts open, update, end (with snapshots) and are stored and published all hour.

Writes, under --out: samples.jsonl (one line per --sample-s: minute, rss_mb, fds, threads, tasks, traced_mb,
tracemalloc's own overhead, store size, segments scored, alerts seen on MQTT), summary.json (slopes of the
first and second half, by least squares, and the top growth between the mid-run and final snapshots), and
monitor.log. RSS includes tracemalloc's own bookkeeping; the summary gives the slope with it subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corevad.models.base import Clip  # noqa: E402
from corevad_stream import App, config_from_dict  # noqa: E402
from corevad_stream.live import show  # noqa: E402
from corevad_stream.testing import free_port  # noqa: E402

log = logging.getLogger("soak")


class CycleBackend:
    """Instant answers: "Anomalous" for segments whose index % period is in [hot, hot + length)."""

    name = "soak"

    def __init__(self, *, period: int = 90, hot: int = 30, length: int = 20) -> None:
        self.period, self.hot, self.length = period, hot, length

    def answer(self, clips: list[Clip]) -> list[str]:
        return ["Anomalous scenes.\nA man smashes the shop window." if self.hot <= c.index % self.period
                < self.hot + self.length else "Normal scenes.\nPeople walk past the shop." for c in clips]

    def close(self) -> None:
        pass


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (units per minute) of (minute, value) points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / var if var else None


def make_clip(path: Path, seconds: int) -> Path:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30",
                    str(path)], check=True)
    return path


def start_mosquitto(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise SystemExit("soak: mosquitto is not installed (apt-get install mosquitto)")
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"soak: mosquitto did not listen on 127.0.0.1:{port} within 10 s")


def top_growth(old: tracemalloc.Snapshot, new: tracemalloc.Snapshot, key: str, limit: int) -> list[dict[str, Any]]:
    # No filter_traces: it walks every trace in Python (minutes for a few hundred thousand); tracemalloc is
    # stopped before this runs, so the analysis does not trace itself.
    diff = new.compare_to(old, key)
    out = []
    for st in diff[:limit]:
        frames = [f"{f.filename}:{f.lineno}" for f in st.traceback]
        out.append({"size_diff_kb": round(st.size_diff / 1024, 1), "size_kb": round(st.size / 1024, 1),
                    "count_diff": st.count_diff, "where": frames if key == "traceback" else frames[0]})
    return out


async def web_client(port: int, stop: asyncio.Event, counts: dict[str, int], every_s: float) -> None:
    """What a browser tab and a Prometheus scraper do: poll the API and keep one SSE stream open."""
    import httpx

    base = f"http://127.0.0.1:{port}"

    async def sse(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                async with client.stream("GET", "/api/stream", timeout=httpx.Timeout(10, read=30)) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            counts["sse_events"] += 1
                        if stop.is_set():
                            return
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        stream = asyncio.create_task(sse(client), name="soak.sse")
        try:
            while not stop.is_set():
                try:
                    for path in ("/", "/metrics", "/api/cameras", "/api/model", "/api/events?limit=50"):
                        r = await client.get(path)
                        counts["http_ok" if r.status_code == 200 else "http_other"] += 1
                    events = r.json()
                    rows = events.get("events", events) if isinstance(events, dict) else events
                    if rows:
                        first = rows[0]["id"]
                        for path in (f"/api/events/{first}", f"/api/events/{first}/snapshot"):
                            r = await client.get(path)
                            counts["http_ok" if r.status_code == 200 else "http_other"] += 1
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    counts["http_error"] += 1
                    log.warning("web client: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every_s)
        finally:
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream


async def mqtt_counter(port: int, prefix: str, counts: dict[str, int], ready: asyncio.Event) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe(f"{prefix}/events", qos=1)
        ready.set()
        async for m in sub.messages:
            ev = json.loads(bytes(m.payload))  # type: ignore[arg-type]
            counts[f"mqtt_{ev.get('type', '?')}"] += 1


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak_"))
    handler = logging.FileHandler(out / "monitor.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("httpx", "transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    clip = make_clip(work / "clip.mp4", args.clip_seconds)
    mport, hport, prefix = free_port(), free_port(), "soak"
    broker = start_mosquitto(mport)
    counts: dict[str, int] = dict.fromkeys(("sse_events", "http_ok", "http_other", "http_error", "mqtt_new",
                                            "mqtt_update", "mqtt_end"), 0)
    cfg = config_from_dict({
        "cameras": [{"name": f"cam{k}", "url": str(clip), "rate": "native", "loop": True}
                    for k in range(args.cameras)],
        "refinement": {"use_features": False},
        "alerts": {"snapshot": True, "close_after_s": 10, "cooldown_s": 10},
        "mqtt": {"host": "127.0.0.1", "port": mport, "prefix": prefix, "outbox": {"path": str(work / "outbox.db")}},
        "store": {"path": str(work / "events.sqlite3")},
        "metrics": {"enabled": True, "port": hport},
        "runtime": {"stats_interval_s": 10.0, "state_dir": str(work / "state")},
    }, source="soak")
    samples_path = out / "samples.jsonl"
    samples: list[dict[str, Any]] = []
    # Snapshots go to disk at once and are loaded back only after the run: held in memory, each one (a few
    # hundred thousand traces) put a ~30 MB step into the RSS being measured.
    snapshots: dict[str, Path] = {}
    snap_minute: dict[str, float] = {}
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    stop = asyncio.Event()
    t0 = time.monotonic()
    try:
        async with App(cfg, backend=CycleBackend()) as app:
            ready = asyncio.Event()
            sub = asyncio.create_task(mqtt_counter(mport, prefix, counts, ready), name="soak.mqtt")
            await asyncio.wait_for(ready.wait(), 10)
            web = asyncio.create_task(web_client(hport, stop, counts, args.poll_s), name="soak.web")
            with open(os.devnull, "w") as devnull:
                from rich.console import Console

                viewer = asyncio.create_task(show(app, console=Console(file=devnull, force_terminal=False),
                                                  plain_every=10.0), name="soak.live")
                total_s = args.minutes * 60
                with samples_path.open("w") as fh:
                    while True:
                        minute = (time.monotonic() - t0) / 60
                        gc.collect()  # what is left is held, not garbage waiting for a collection
                        traced = tracemalloc.get_traced_memory()[0] / 2**20 if args.tracemalloc else 0.0
                        overhead = tracemalloc.get_tracemalloc_memory() / 2**20 if args.tracemalloc else 0.0
                        store = [work / f"events.sqlite3{ext}" for ext in ("", "-wal")]
                        row = {"minute": round(minute, 2), "rss_mb": round(rss_mb(), 2), "fds": open_fds(),
                               "threads": os_threads(), "tasks": len(asyncio.all_tasks()),
                               "traced_mb": round(traced, 2), "tracemalloc_overhead_mb": round(overhead, 2),
                               "store_mb": round(sum(p.stat().st_size for p in store if p.exists()) / 2**20, 2),
                               "segments": sum(c.scored for c in app.counters.values()),
                               "drops": sum(c.drops for c in app.counters.values()), **counts}
                        samples.append(row)
                        fh.write(json.dumps(row) + "\n")
                        fh.flush()
                        if args.tracemalloc:
                            for label, at in (("start", args.warmup_min), ("mid", args.minutes / 2)):
                                if label not in snapshots and minute >= at:
                                    snapshots[label] = out / f"tracemalloc-{label}.snap"
                                    tracemalloc.take_snapshot().dump(str(snapshots[label]))
                                    snap_minute[label] = minute
                                    gc.collect()
                        if minute * 60 >= total_s:
                            break
                        await asyncio.sleep(min(args.sample_s, max(0.1, total_s - minute * 60)))
                if args.tracemalloc:
                    snapshots["end"] = out / "tracemalloc-end.snap"
                    tracemalloc.take_snapshot().dump(str(snapshots["end"]))
                stop.set()
                viewer.cancel()
                for task in (web, sub, viewer):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
    finally:
        tracemalloc.stop()
        broker.terminate()
        broker.wait(10)
        logging.getLogger().removeHandler(handler)
    run_min = samples[-1]["minute"]
    # Halves split at the samples where the snapshots were taken: a sample after a snapshot may still carry
    # what taking it allocated, which a slope across the split would count as growth.
    mid = snap_minute.get("mid", run_min / 2)
    half = [s for s in samples if s["minute"] > mid]
    first = [s for s in samples if snap_minute.get("start", args.warmup_min) < s["minute"] <= mid]

    def slopes(rows: list[dict[str, Any]]) -> dict[str, Any]:
        def sl(key: str, minus: str | None = None) -> float | None:
            v = slope_per_min([(r["minute"], r[key] - (r[minus] if minus else 0)) for r in rows])
            return None if v is None else round(v, 4)
        return {"rss_mb_per_min": sl("rss_mb"),
                "rss_minus_tracemalloc_mb_per_min": sl("rss_mb", "tracemalloc_overhead_mb"),
                "traced_mb_per_min": sl("traced_mb"), "fds_per_min": sl("fds"), "threads_per_min": sl("threads"),
                "store_mb_per_min": sl("store_mb")}

    summary: dict[str, Any] = {
        "ran_minutes": run_min, "cameras": args.cameras, "tracemalloc_frames": args.tracemalloc,
        "first": samples[0], "last": samples[-1],
        "first_half_after_warmup": slopes(first), "second_half": slopes(half),
        "fds_range_second_half": [min(s["fds"] for s in half), max(s["fds"] for s in half)] if half else None,
    }
    loaded = {k: tracemalloc.Snapshot.load(str(p)) for k, p in snapshots.items()}
    if "mid" in loaded and "end" in loaded:
        summary["growth_mid_to_end_by_line"] = top_growth(loaded["mid"], loaded["end"], "lineno", args.top)
        summary["growth_mid_to_end_by_traceback"] = top_growth(loaded["mid"], loaded["end"], "traceback", 8)
    if "start" in loaded and "end" in loaded:
        summary["growth_start_to_end_by_line"] = top_growth(loaded["start"], loaded["end"], "lineno", args.top)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="Run length (default 60).")
    ap.add_argument("--cameras", type=int, default=3, help="Looping 640x480 file cameras (default 3).")
    ap.add_argument("--clip-seconds", type=int, default=20, help="Length of the looping test clip (default 20).")
    ap.add_argument("--sample-s", type=float, default=30.0, help="Seconds between samples (default 30).")
    ap.add_argument("--poll-s", type=float, default=5.0, help="Seconds between API polls (default 5).")
    ap.add_argument("--warmup-min", type=float, default=2.0, help="Minutes left out of the first-half slope and "
                                                                  "before the first snapshot (default 2).")
    ap.add_argument("--tracemalloc", type=int, default=6, help="Frames per traced allocation; 0 = off (default 6).")
    ap.add_argument("--top", type=int, default=25, help="Growth lines to report (default 25).")
    ap.add_argument("--out", type=Path, required=True, help="Folder for samples.jsonl, summary.json, monitor.log.")
    args = ap.parse_args()
    if args.minutes <= 0 or args.cameras < 1 or args.sample_s <= 0:
        print("soak: --minutes, --cameras and --sample-s must be positive", file=sys.stderr)
        return 2
    summary = asyncio.run(soak(args))
    print(json.dumps({k: summary[k] for k in ("ran_minutes", "first_half_after_warmup", "second_half",
                                             "fds_range_second_half")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
