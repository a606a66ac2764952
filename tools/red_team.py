"""The fault red-team of issue 8, rerun: what an MQTT subscriber sees when the model or a camera breaks.

Real parts only: a private Mosquitto, the GStreamer RTSP server and the scriptable OpenAI-compatible
model server the tests use (tests/model_server.py), the monitor itself as `corevad-stream run` processes
or an in-process App with its real sinks. Prints one table (or --json):

    .venv/bin/python tools/red_team.py            # about 2.5 minutes
    .venv/bin/python tools/red_team.py --quick    # the outage scenario at 1/4 of its length

Scenarios: (1) the model answers "Anomalous" for 20 s (an alert opens), then HTTP 500 for 40 s, then
"Normal" again; (2) one 429 with Retry-After: 3600 while the server is healthy 2 s later; (3) SIGTERM while
the model server hangs; (4) a SIGSTOPped RTSP server, stall_timeout_s 10; (5) a killed RTSP server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# The same Mosquitto, RTSP server, model server and model double the tests use.
from corevad_stream.testing import (
    ANOMALOUS,
    NORMAL,
    Mosquitto,
    MqttCollector,
    RtspServer,
    ScriptedBackend,
    ScriptedModelServer,
    make_test_video,
)


def _openai(srv: ScriptedModelServer, **extra: Any) -> dict[str, Any]:
    return {"clip": None, "vlm": {"backend": "openai", "max_new_tokens": 16, "openai": {
        "base_url": srv.base_url, "model": "m", "api_key_env": None, "max_side": 32, **extra}}}


def _config(path: Path, cameras: list[dict[str, Any]], **sections: Any) -> Path:
    data = {"cameras": cameras, "metrics": {"enabled": False},
            "runtime": {"frame_size": 64, "frames_per_segment": 2, "stats_interval_s": 1.0,
                        "state_dir": str(path.parent / "state")}, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def _monitor(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "corevad_stream.cli", "run", "-c", str(cfg), "--no-live"],
                                stdout=fh, stderr=subprocess.STDOUT)


async def outage(work: Path, broker: Mosquitto, video: Path, scale: float) -> dict[str, Any]:
    """Scenario 1, as the subscriber of <prefix>/# sees it."""
    anomalous_s, outage_s, recovery_s = 20 * scale, 40 * scale, 20 * scale
    with ScriptedModelServer(lambda body: ANOMALOUS) as srv:
        cfg = _config(work / "outage.yaml", [{"name": "shop", "url": str(video), "rate": "native", "loop": True}],
                      model=_openai(srv, max_retries=1, backoff_s=0.5, timeout_s=10),
                      mqtt={"host": broker.host, "port": broker.port, "prefix": "rt",
                            "outbox": {"path": str(work / "outbox-outage.sqlite")}})
        sub = MqttCollector(broker.host, broker.port, ("rt/#",))
        await sub.start()
        proc = _monitor(cfg, work / "outage.log")
        try:
            await sub.wait_for(lambda: bool(sub.on("rt/shop/score")), timeout=60, what="first score")
            await asyncio.sleep(anomalous_s)
            t_out = time.perf_counter()
            srv.set("error500")
            await asyncio.sleep(outage_s)
            t_back = time.perf_counter()
            srv.answer = lambda body: NORMAL
            srv.set("answer")
            await asyncio.sleep(recovery_s)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            await asyncio.sleep(1.0)
            await sub.stop()

    def during(topic: str, t0: float, t1: float) -> list[Any]:
        out = []
        for m in sub.on(topic):
            if t0 <= m.at <= t1:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(m.payload))
                    continue
                out.append(m.payload.decode())
        return out

    scores = during("rt/shop/score", t_out, t_back)
    models = [(m.at - t_out, json.loads(m.payload)) for m in sub.on("rt/model")]
    down_at = next((t for t, p in models if p["state"] == "down" and t >= 0), None)
    up_at = next((t for t, p in models if p["state"] == "ok" and t > outage_s), None)
    events = [(m.at - t_out, json.loads(m.payload)) for m in sub.on("rt/events")]
    return {
        "outage_s": outage_s,
        "scores_during_outage": len(scores),
        "scores_published_as_normal_during_outage": sum(bool(s.get("available")) and s["score"] == 0.0
                                                        for s in scores),
        "scores_unavailable_during_outage": sum(not s.get("available", True) for s in scores),
        "state_messages_during_outage": during("rt/shop/state", t_out, t_back),
        "end_events_during_outage": sum(e["type"] == "end" and 0 <= t <= outage_s for t, e in events),
        "model_down_after_s": None if down_at is None else round(down_at, 1),
        "model_ok_again_after_recovery_s": None if up_at is None else round(up_at - outage_s, 1),
        "alert_end_reason": next((e["after"]["end_reason"] for _, e in events if e["type"] == "end"), None),
        "timeline": [(round(t, 1), e["type"], e["after"].get("end_reason")) for t, e in events]
        + [(round(t, 1), "model:" + p["state"], p["reason"][:60]) for t, p in models],
    }


async def retry_after(work: Path, video: Path) -> dict[str, Any]:
    """Scenario 2: one 429 with Retry-After 3600, healthy again 2 s later; scoring resumes when?"""
    from corevad_stream import App, MemorySink
    from corevad_stream.config import load_config

    with ScriptedModelServer(lambda body: NORMAL) as srv:
        cfg = load_config(_config(work / "ra.yaml", [{"name": "door", "url": str(video), "rate": "native",
                                                      "loop": True}], model=_openai(srv, max_retries=5)))
        sink = MemorySink()
        async with App(cfg, sinks=[sink]):
            await sink.wait_for(lambda ms: any(m.kind == "score" for m in ms), 60)
            srv.set("rate_limit")
            await asyncio.sleep(2.0)
            t_ok = time.time()
            srv.set("answer")
            n = len(sink.messages)
            await sink.wait_for(lambda ms: any(m.kind == "score" and m.payload["available"] for m in ms[n:]), 120)
            resumed = time.time() - t_ok
    return {"scoring_resumed_after_server_healthy_s": round(resumed, 1)}


async def hang_shutdown(work: Path, video: Path) -> dict[str, Any]:
    """Scenario 3: SIGTERM while every model request hangs."""
    with ScriptedModelServer(lambda body: NORMAL, hang_limit_s=600) as srv:
        cfg = _config(work / "hang.yaml", [{"name": "hall", "url": str(video), "rate": "native", "loop": True}],
                      model=_openai(srv, timeout_s=600), jsonl={"path": str(work / "hang.jsonl")})
        proc = _monitor(cfg, work / "hang.log")
        jsonl = work / "hang.jsonl"
        deadline = time.monotonic() + 60
        while not (jsonl.exists() and b'"score"' in jsonl.read_bytes()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        srv.set("hang")
        await asyncio.sleep(5.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        took = time.monotonic() - t0
    return {"shutdown_during_hang_s": round(took, 1), "exit_status": rc, "shutdown_timeout_s": 10.0}


async def cameras(work: Path, video: Path) -> dict[str, Any]:
    """Scenarios 4 and 5: stall (SIGSTOP) and kill of a real RTSP server, stall_timeout_s 10."""
    from corevad_stream import App, MemorySink
    from corevad_stream.config import config_from_dict

    out: dict[str, Any] = {}
    for scenario in ("stall", "kill"):
        server = RtspServer(work / f"rtsp-{scenario}", file=video)
        server.start()
        try:
            cfg = config_from_dict({"cameras": [{"name": "cam", "url": server.url}], "metrics": {"enabled": False},
                                    "runtime": {"frame_size": 64, "state_dir": str(work / "state"), "reconnect": {
                                        "stall_timeout_s": 10, "open_timeout_s": 10}}})
            sink = MemorySink()
            async with App(cfg, backend=ScriptedBackend(), sinks=[sink]):
                await sink.wait_for(lambda ms: any(m.kind == "score" for m in ms), 60)
                t0 = time.monotonic()
                if scenario == "stall":
                    os.kill(server.proc.pid, signal.SIGSTOP)
                else:
                    server.kill()
                try:
                    await sink.wait_for(lambda ms: any(m.kind == "status" and m.payload["state"] == "offline"
                                                       for m in ms), 120)
                    took = time.monotonic() - t0
                finally:
                    if scenario == "stall":
                        os.kill(server.proc.pid, signal.SIGCONT)
                reason = next(m.payload["reason"] for m in sink.messages
                              if m.kind == "status" and m.payload["state"] == "offline")
            out[f"{scenario}_detected_s"] = round(took, 2)
            out[f"{scenario}_reason"] = reason
        finally:
            server.kill()
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="corevad-redteam-") as tmp:
        work = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(work / "xdg")
        video = make_test_video(work / "clip.mp4", seconds=4, size=(160, 120), fps=20)
        broker = Mosquitto(work / "mosquitto")
        broker.start()
        try:
            results = {"outage": await outage(work, broker, video, 0.25 if args.quick else 1.0)}
        finally:
            broker.kill()
        results["retry_after"] = await retry_after(work, video)
        results["hang"] = await hang_shutdown(work, video)
        results["cameras"] = await cameras(work, video)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="The outage scenario at 1/4 of its length.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    o, r, h, c = results["outage"], results["retry_after"], results["hang"], results["cameras"]
    rows = [
        ("model outage: score messages during it", f"{o['scores_during_outage']} "
         f"({o['scores_unavailable_during_outage']} unavailable, {o['scores_published_as_normal_during_outage']} "
         "as normal)"),
        ("model outage: state messages / alert ends during it", f"{o['state_messages_during_outage']} / "
                                                                 f"{o['end_events_during_outage']}"),
        ("model outage: <prefix>/model down after", f"{o['model_down_after_s']} s"),
        ("model outage: ok again after recovery", f"{o['model_ok_again_after_recovery_s']} s"),
        ("model outage: the alert finally ended because", str(o["alert_end_reason"])),
        ("429 Retry-After 3600: scoring resumed after the server was healthy",
         f"{r['scoring_resumed_after_server_healthy_s']} s"),
        ("SIGTERM during a model hang: process gone after", f"{h['shutdown_during_hang_s']} s (exit {h['exit_status']},"
                                                            f" shutdown_timeout_s {h['shutdown_timeout_s']:g})"),
        ("SIGSTOPped RTSP server (stall_timeout_s 10): offline after", f"{c['stall_detected_s']} s: "
                                                                       f"{c['stall_reason']}"),
        ("killed RTSP server: offline after", f"{c['kill_detected_s']} s: {c['kill_reason']}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("\noutage timeline (s from the start of the outage):")
    for t, what, why in sorted(o["timeline"], key=lambda x: x[0]):
        print(f"  {t:>7}  {what}  {why or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
