"""Runtime figures: pipeline CPU overhead vs bare OpenCV decoding, real-time stream capacity, memory per camera
and its growth, and alert latency to an MQTT subscriber (model time excluded).

    .venv/bin/python tools/bench_stream.py                      # short run (~3 min)
    .venv/bin/python tools/bench_stream.py --minutes 10         # memory growth over a 10-minute run

Model inference is excluded everywhere: a null backend answers instantly from a script and no CLIP encoder
runs, so what is measured is the runtime itself (decode, segmenting, resizing, batching, scoring, sinks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corevad.models.base import Clip  # noqa: E402
from corevad_stream import App, MemorySink, config_from_dict  # noqa: E402
from corevad_stream.sinks.jsonl import JsonlSink  # noqa: E402
from corevad_stream.testing import free_port, make_test_video  # noqa: E402


class NullBackend:
    """Instant answers (model time excluded): anomalous for segments where index % period == hot."""

    name = "null"

    def __init__(self, period: int = 0, hot: int = 2) -> None:
        self.period, self.hot = period, hot

    def answer(self, clips: list[Clip]) -> list[str]:
        return ["Anomalous scenes.\nA person falls down." if self.period and c.index % self.period == self.hot
                else "Normal scenes.\nA quiet corridor." for c in clips]

    def close(self) -> None:
        pass


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bare_decode(path: Path, streams: int) -> tuple[float, float]:
    """cv2 read() of every frame, one thread per stream (what a plain OpenCV app does). (cpu s, stream s)."""
    frames = [0] * streams

    def run(k: int) -> None:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            frames[k] += 1
        cap.release()

    c0 = cpu_s()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cpu_s() - c0, sum(frames) / 30.0


def base_config(cameras: list[dict[str, Any]], **runtime: Any) -> Any:
    return config_from_dict({
        "cameras": cameras, "metrics": {"enabled": False},
        "refinement": {"use_features": False}, "alerts": {"snapshot": False},
        "runtime": {"stats_interval_s": 5.0, **runtime},
    })


async def pipeline(path: Path, streams: int, out: Path) -> tuple[float, float]:
    """The whole runtime at full speed (lossless), sinks included. (cpu s, stream s)."""
    cams = [{"name": f"c{k}", "url": str(path), "rate": "fast", "overload_policy": "block"} for k in range(streams)]
    cfg = base_config(cams)
    c0 = cpu_s()
    async with App(cfg, backend=NullBackend(), sinks=[JsonlSink(out)]) as app:
        await app.wait_finished(timeout=3600)
        frames = sum(c.frames for c in app.counters.values())
    return cpu_s() - c0, frames / 30.0


async def realtime(path: Path, streams: int, seconds: float) -> dict[str, Any]:
    """`streams` looping cameras at native rate for `seconds`: do they all keep 30 fps with no lag?"""
    cams = [{"name": f"r{k}", "url": str(path), "rate": "native", "loop": True} for k in range(streams)]
    async with App(base_config(cams), backend=NullBackend(), sinks=[MemorySink(limit=100)]) as app:
        await asyncio.sleep(3.0)
        f0 = {n: c.frames for n, c in app.counters.items()}
        c0, t0 = cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        dt = time.monotonic() - t0
        fps = {n: (c.frames - f0[n]) / dt for n, c in app.counters.items()}
        drops = sum(c.drops for c in app.counters.values())
        cpu = cpu_s() - c0
    return {"streams": streams, "min_fps": round(min(fps.values()), 2), "drops": drops,
            "cpu_cores_used": round(cpu / dt, 3), "holds_real_time": min(fps.values()) >= 29.0 and drops == 0}


async def memory(path: Path, minutes: float, cams_many: int = 8) -> dict[str, Any]:
    """RSS with 1 vs cams_many 640x480 cameras (default 448 px model frames), then growth over the run."""
    def cams(n: int) -> list[dict[str, Any]]:
        return [{"name": f"m{k}", "url": str(path), "rate": "native", "loop": True} for k in range(n)]

    async def settle(app: App) -> float:
        await asyncio.sleep(8.0)
        return rss_mb()

    async with App(base_config(cams(1)), backend=NullBackend(), sinks=[MemorySink(limit=100)]) as app:
        one = await settle(app)
    async with App(base_config(cams(cams_many)), backend=NullBackend(), sinks=[MemorySink(limit=100)]) as app:
        many = await settle(app)
        samples = [(0.0, rss_mb())]
        t0 = time.monotonic()
        while time.monotonic() - t0 < minutes * 60:
            await asyncio.sleep(min(15.0, minutes * 60 / 8))
            samples.append((time.monotonic() - t0, rss_mb()))
        ring_mb = sum(c.ring.nbytes for c in app.cameras.values() if c.ring) / len(app.cameras) / 2**20
    first_half = [m for t, m in samples if t <= samples[-1][0] / 2]
    second_half = [m for t, m in samples if t > samples[-1][0] / 2]
    return {
        "rss_1_camera_mb": round(one, 1), f"rss_{cams_many}_cameras_mb": round(many, 1),
        "per_camera_mb": round((many - one) / (cams_many - 1), 1), "ring_buffer_per_camera_mb": round(ring_mb, 1),
        "run_minutes": minutes, "rss_start_mb": round(samples[0][1], 1), "rss_end_mb": round(samples[-1][1], 1),
        "growth_mb": round(statistics.mean(second_half) - statistics.mean(first_half), 1) if second_half else 0.0,
        "samples": [(round(t), round(m, 1)) for t, m in samples],
    }


async def latency(path: Path, seconds: float, cameras: int) -> dict[str, Any]:
    """Alerts from native-rate cameras to a real Mosquitto; subscriber receipt - segment end - model time."""
    import aiomqtt

    port = free_port()
    mosq = shutil.which("mosquitto")
    if mosq is None:
        return {"error": "mosquitto not installed"}
    broker = subprocess.Popen([mosq, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        lat: list[float] = []
        tmp = Path(tempfile.mkdtemp())
        cams = [{"name": f"a{k}", "url": str(path), "rate": "native", "loop": True} for k in range(cameras)]
        cfg = config_from_dict({
            "cameras": cams, "metrics": {"enabled": False}, "refinement": {"use_features": False,
                                                                            "smooth_length": 1},
            "alerts": {"snapshot": False, "close_after_s": 0, "cooldown_s": 0},
            "mqtt": {"host": "127.0.0.1", "port": port, "prefix": "bench", "outbox": {"path": str(tmp / "o.db")}},
        })
        async with aiomqtt.Client("127.0.0.1", port) as sub:
            await sub.subscribe("bench/events", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    t = time.time()
                    ev = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if ev["type"] == "new":
                        timing = ev["timing"]
                        lat.append(t - timing["segment_end"] - timing["model_s"])

            task = asyncio.create_task(collect())
            async with App(cfg, backend=NullBackend(period=4, hot=2)):
                await asyncio.sleep(seconds)
            await asyncio.sleep(1.0)
            task.cancel()
        lat.sort()
        if not lat:
            return {"error": "no alerts received"}
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
        return {"alerts": len(lat), "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
                "max_ms": round(lat[-1] * 1000, 1), "cameras": cameras}
    finally:
        broker.terminate()
        broker.wait(10)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=2, help="Concurrent streams in the overhead test (default 2).")
    ap.add_argument("--clip-seconds", type=int, default=30, help="Length of the 640x480@30fps test clip.")
    ap.add_argument("--repeats", type=int, default=3, help="Alternating baseline/pipeline repeats (median).")
    ap.add_argument("--realtime-seconds", type=float, default=20.0, help="Duration of each real-time check.")
    ap.add_argument("--realtime-probes", type=int, default=4, help="Bisection steps of the capacity search.")
    ap.add_argument("--minutes", type=float, default=1.0, help="Memory-growth run length (default 1).")
    ap.add_argument("--latency-seconds", type=float, default=60.0, help="Alert-latency run length.")
    ap.add_argument("--latency-cameras", type=int, default=4, help="Cameras in the alert-latency run.")
    ap.add_argument("--only", choices=["overhead", "realtime", "memory", "latency"], action="append")
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args()
    only = set(args.only or ["overhead", "realtime", "memory", "latency"])
    work = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    clip = make_test_video(work / "clip_640x480_30fps.mp4", seconds=args.clip_seconds, size=(640, 480), fps=30)
    res: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "cv2": cv2.__version__}}

    if "overhead" in only:
        bare, pipe = [], []
        for r in range(args.repeats):
            c, s = bare_decode(clip, args.streams)
            bare.append(c / s)
            c, s = await pipeline(clip, args.streams, work / f"out{r}.jsonl")
            pipe.append(c / s)
        b, p = statistics.median(bare), statistics.median(pipe)
        res["overhead"] = {
            "streams": args.streams, "bare_decode_cpu_ms_per_stream_s": round(b * 1000, 2),
            "pipeline_cpu_ms_per_stream_s": round(p * 1000, 2), "ratio": round(p / b, 3),
            "added_over_decode_pct": round((p / b - 1) * 100, 1),
            "realtime_capacity_estimate": int((os.cpu_count() or 1) / p),
        }
        print(json.dumps({"overhead": res["overhead"]}), flush=True)
    if "realtime" in only:
        # Bisect the largest stream count that keeps 30 fps with no drops (file cameras at native rate).
        est = res.get("overhead", {}).get("realtime_capacity_estimate", 16)
        lo, hi, checks = 0, est + 1, []
        n = max(1, est // 2)
        for _ in range(args.realtime_probes):
            checks.append(await realtime(clip, n, args.realtime_seconds))
            print(json.dumps({"realtime": checks[-1]}), flush=True)
            lo, hi = (n, hi) if checks[-1]["holds_real_time"] else (lo, n)
            if hi - lo <= max(1, lo // 10):
                break
            n = (lo + hi) // 2
        res["realtime"] = {"max_streams_holding_real_time": lo, "checks": checks}
    if "memory" in only:
        if args.only == ["memory"]:
            res["memory"] = await memory(clip, args.minutes)
        else:  # a fresh process: RSS must not carry what earlier stages allocated
            subprocess.run([sys.executable, __file__, "--only", "memory", "--minutes", str(args.minutes),
                                  "--clip-seconds", str(args.clip_seconds), "--json", str(work / "mem.json")],
                                 capture_output=True, text=True, check=True)
            res["memory"] = json.loads((work / "mem.json").read_text())["memory"]
        print(json.dumps({"memory": res["memory"]}), flush=True)
    if "latency" in only:
        res["alert_latency"] = await latency(clip, args.latency_seconds, cameras=args.latency_cameras)
        print(json.dumps({"alert_latency": res["alert_latency"]}), flush=True)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
