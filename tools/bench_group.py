"""A group of monitors on this machine: takeover times, time to rebalance on a join, cameras per monitor process.

Real parts: PostgreSQL (corevad_stream.testing.postgres), Mosquitto, the scripted model server (an
OpenAI-compatible double answering "Anomalous" at once), looping file cameras, and `corevad-stream run`
processes with `group.enabled`. Who owns a camera is read, as a user would, from the `monitor` field of the
retained status messages on MQTT.

    .venv/bin/python tools/bench_group.py [--kills 10] [--freezes 5] [--lease-s 6 --renew-s 1.5]
                                          [--per-monitor 6] [--window-s 30] [--out group.json]

1. takeover: 3 monitors, 9 cameras; SIGKILL one (or SIGSTOP it), time until every camera it held is online
   under another monitor (p50/p99 over --kills and --freezes; the last camera of each event counts). After
   a kill a new member starts, after a freeze the member is thawed, and the group is let settle at 3/3/3.
2. rebalance: 2 monitors holding 9 cameras, a third starts: time from its start to 3/3/3.
3. capacity: 1, 2, 3 monitors with --per-monitor cameras each (64x48 clips at 4 fps, 2 frames a segment):
   segments/s scored per camera (1.0 = keeping up) and CPU seconds per camera-second of the monitor
   processes, from /proc. The model is the scripted server, so this is the runtime's own cost (decode,
   segmenting, scoring, MQTT, the group), not a model's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from corevad_stream.testing import Mosquitto, MqttCollector, ScriptedModelServer, make_test_video
from corevad_stream.testing.postgres import PostgresServer

PREFIX = "bench"
TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


class Bench:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.pg = PostgresServer(root / "pg")
        self.broker = Mosquitto(root / "mqtt")
        self.model = ScriptedModelServer(lambda body: "Anomalous scenes.\nA man climbs over the gate.")
        self.clip = make_test_video(root / "clip.mp4", seconds=2.0, size=(64, 48), fps=4)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sub: MqttCollector | None = None
        self.serial = 0

    # -- the group's processes ------------------------------------------------------------------------
    def spawn(self, cameras: list[str]) -> str:
        self.serial += 1
        name = f"m{self.serial}"
        d = self.root / name
        d.mkdir()
        cfg = d / "c.yaml"
        cfg.write_text(yaml.safe_dump({
            "cameras": [{"name": c, "url": str(self.clip), "loop": True, "rate": "native"} for c in cameras],
            "model": {"vlm": {"backend": "openai", "max_new_tokens": 8,
                              "openai": {"base_url": self.model.base_url, "api_key_env": None}}, "clip": None},
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "prefix": PREFIX, "keepalive_s": 5,
                     "outbox": {"path": str(d / "outbox.sqlite")}},
            "store": {"url": self.pg.url, "password_env": "BENCH_PG_PASSWORD"},
            "metrics": {"enabled": False}, "refinement": {"smooth_length": 1},
            "alerts": {"open_threshold": 0.6, "close_threshold": 0.4, "close_after_s": 600},
            "runtime": {"segment_seconds": 1.0, "frames_per_segment": 2, "frame_size": 32,
                        "state_dir": str(d / "state"), "stats_interval_s": 5, "shutdown_timeout_s": 10},
            "group": {"enabled": True, "monitor_id": name, "lease_s": self.args.lease_s,
                      "renew_s": self.args.renew_s},
        }))
        env = {**os.environ, "BENCH_PG_PASSWORD": self.pg.password}
        with (d / "monitor.log").open("ab") as fh:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "corevad_stream.cli", "run", "-c", str(cfg), "--no-live"],
                stdout=fh, stderr=subprocess.STDOUT, env=env)
        return name

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def cpu_s(self, names: list[str]) -> float:
        total = 0
        for n in names:
            fields = Path(f"/proc/{self.procs[n].pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime (the children are threads)
        return total / TICK

    # -- what MQTT says -------------------------------------------------------------------------------
    def owners(self) -> dict[str, tuple[str | None, float]]:
        """camera -> (monitor whose latest status says online, or None; that status' time)."""
        assert self.sub is not None
        cur: dict[str, tuple[str | None, float]] = {}
        for m in self.sub.messages:
            parts = m.topic.split("/")
            if len(parts) == 3 and parts[2] == "status" and m.payload:
                st = json.loads(m.payload)
                cur[parts[1]] = (st["monitor"] if st["status"] == "online" else None, st["time"])
        return cur

    async def until(self, pred: Any, timeout: float, what: str) -> None:
        assert self.sub is not None
        await self.sub.wait_for(pred, timeout=timeout, what=what)

    def spread(self, cameras: list[str], members: list[str]) -> bool:
        own = self.owners()
        counts = [sum(1 for c in cameras if own.get(c, (None, 0))[0] == m) for m in members]
        share = -(-len(cameras) // len(members))
        return all(own.get(c, (None, 0))[0] in members for c in cameras) and max(counts) <= share

    # -- the measurements -----------------------------------------------------------------------------
    async def takeovers(self) -> dict[str, Any]:
        cams = [f"cam{i}" for i in range(9)]
        members = [self.spawn(cams) for _ in range(3)]
        await self.until(lambda: self.spread(cams, members), 180, "3 monitors at 3/3/3")
        times: dict[str, list[float]] = {"kill": [], "freeze": []}
        plan = ["kill"] * self.args.kills + ["freeze"] * self.args.freezes
        for i, how in enumerate(plan):
            victim = members[i % 3]
            held = [c for c, (o, _) in self.owners().items() if o == victim]
            t0 = time.time()
            self.procs[victim].send_signal(signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            await self.until(lambda v=victim, h=held: all(self.owners()[c][0] not in (None, v) for c in h), 120,
                             f"{how} {victim}: its cameras taken over")
            took = max(self.owners()[c][1] for c in held) - t0
            times[how].append(took)
            print(f"{how} {i + 1}: {victim} held {len(held)}, all watched again after {took:.2f} s", flush=True)
            if how == "kill":
                self.procs[victim].wait(10)
                members[members.index(victim)] = self.spawn(cams)
            else:
                self.procs[victim].send_signal(signal.SIGCONT)
            await self.until(lambda: self.spread(cams, members), 180, "back at 3/3/3")
        self.stop_all()
        out: dict[str, Any] = {"lease_s": self.args.lease_s, "renew_s": self.args.renew_s}
        for how, vals in times.items():
            if vals:
                out[how] = {"n": len(vals), "p50_s": round(statistics.median(vals), 2),
                            "p99_s": round(pct(vals, 99), 2), "max_s": round(max(vals), 2)}
        return out

    async def rebalance(self) -> dict[str, Any]:
        cams = [f"cam{i}" for i in range(9)]
        members = [self.spawn(cams) for _ in range(2)]
        await self.until(lambda: self.spread(cams, members), 180, "2 monitors at 5/4")
        t0 = time.time()
        members.append(self.spawn(cams))
        await self.until(lambda: self.spread(cams, members), 180, "3 monitors at 3/3/3")
        done = max(t for _, t in self.owners().values())
        self.stop_all()
        return {"join_to_3_3_3_s": round(done - t0, 2), "lease_s": self.args.lease_s, "renew_s": self.args.renew_s}

    async def capacity(self) -> list[dict[str, Any]]:
        rows = []
        assert self.sub is not None
        for n in (1, 2, 3):
            cams = [f"cap{n}x{i}" for i in range(self.args.per_monitor * n)]
            members = [self.spawn(cams) for _ in range(n)]
            await self.until(lambda c=cams, m=members: self.spread(c, m), 240,
                             f"{n} monitor(s) sharing {len(cams)} cameras")
            await asyncio.sleep(5)  # let the cameras' first segments settle (not a wait for a state: a warm-up)
            count0 = {c: len(self.sub.on(f"{PREFIX}/{c}/score")) for c in cams}
            cpu0, t0 = self.cpu_s(members), time.monotonic()
            await asyncio.sleep(self.args.window_s)
            cpu1, t1 = self.cpu_s(members), time.monotonic()
            rates = [(len(self.sub.on(f"{PREFIX}/{c}/score")) - count0[c]) / (t1 - t0) for c in cams]
            cpu_per_cam = (cpu1 - cpu0) / (t1 - t0) / len(cams)
            rows.append({"monitors": n, "cameras": len(cams), "segments_per_s_per_camera_min": round(min(rates), 3),
                         "segments_per_s_per_camera_mean": round(statistics.mean(rates), 3),
                         "cpu_cores_per_camera": round(cpu_per_cam, 4),
                         "load_average": round(os.getloadavg()[0], 1)})
            print(rows[-1], flush=True)
            self.stop_all()
        return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--freezes", type=int, default=5)
    ap.add_argument("--lease-s", type=float, default=6.0)
    ap.add_argument("--renew-s", type=float, default=1.5)
    ap.add_argument("--per-monitor", type=int, default=6, help="Cameras per monitor in the capacity part.")
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--only", action="append", choices=["takeover", "rebalance", "capacity"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    parts = args.only or ["takeover", "rebalance", "capacity"]
    tmp = tempfile.mkdtemp(prefix="bench-group-")
    try:
        bench = Bench(Path(tmp), args)
        result: dict[str, Any] = {}
        with bench.pg, bench.broker, bench.model:
            bench.pg.start()
            bench.broker.start()
            async with MqttCollector(bench.broker.host, bench.broker.port, [f"{PREFIX}/#"]) as sub:
                bench.sub = sub
                try:
                    if "takeover" in parts:
                        result["takeover"] = await bench.takeovers()
                    if "rebalance" in parts:
                        result["rebalance"] = await bench.rebalance()
                    if "capacity" in parts:
                        result["capacity"] = await bench.capacity()
                finally:
                    bench.stop_all()
    except BaseException:
        print(f"failed: the monitors' logs are kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
