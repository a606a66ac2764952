"""Arming latency: from an MQTT arming command to the camera's changed state on the bus (p50/p99 over N commands).

A private Mosquitto, the monitor (App) with one frame-less camera scored by a scripted model (so the camera is
busy, as a live one is), and a separate subscriber process (mosquitto_sub, stamping each message on arrival
with the wall clock): each command (`<prefix>/gate/arming/set` OFF, then ON, alternating) is stamped just
before it is published; its latency is the arrival of the answer on

    <prefix>/gate/arming   the retained arming decision (armed, state, until, source)
    <prefix>/gate/status   the retained status carrying the same arming state

Commands go one at a time (the next after both answers arrived). Run:

    .venv/bin/python tools/bench_arming.py -n 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from corevad_stream import App
from corevad_stream.config import config_from_dict
from corevad_stream.testing import Mosquitto, ScriptedBackend

PREFIX = "bench"
CAMERA = "gate"


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": len(ms), "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2),
            "p99_ms": round(float(p99), 2), "max_ms": round(float(ms.max()), 2)}


class Subscriber:
    """mosquitto_sub in its own process; arrivals (wall-clock stamp, topic, payload) in order."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.args = [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", host, "-p", str(port), "-q", "1",
                     "-F", "%U %t %p", *[a for t in topics for a in ("-t", t)]]
        self.seen: list[tuple[float, str, str]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._proc = await asyncio.create_subprocess_exec(*self.args, stdout=asyncio.subprocess.PIPE)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            await self._proc.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            stamp, topic, payload = line.decode().rstrip("\n").split(" ", 2)
            self.seen.append((float(stamp), topic, payload))

    async def wait_for(self, pred: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while (found := pred()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout} s")
            await asyncio.sleep(0.0005)
        return found


def _first(sub: Subscriber, since: int, topic: str, want: str) -> float | None:
    """Stamp of the first message on `topic` after index `since` whose arming state is `want`."""
    for stamp, t, payload in sub.seen[since:]:
        if t != topic:
            continue
        data = json.loads(payload)
        state = data["arming"]["state"] if "arming" in data else data.get("state")
        if state == want:
            return stamp
    return None


async def bench(n: int, interval: float) -> dict[str, Any]:
    import aiomqtt

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            cfg = config_from_dict({
                "cameras": [{"name": CAMERA, "url": "frameless://", "rate": "native"}],
                "metrics": {"enabled": False}, "alerts": {"snapshot": False},
                "mqtt": {"host": broker.host, "port": broker.port, "prefix": PREFIX},
                "runtime": {"segment_seconds": 0.2, "max_wait_s": 0.0, "state_dir": str(Path(tmp) / "state")}})
            arming_t, status_t = f"{PREFIX}/{CAMERA}/arming", f"{PREFIX}/{CAMERA}/status"
            async with Subscriber(broker.host, broker.port, [arming_t, status_t, f"{PREFIX}/probe"]) as sub, \
                    aiomqtt.Client(broker.host, broker.port) as client:
                for _ in range(50):  # the subscriber is ready once it sees a probe
                    await client.publish(f"{PREFIX}/probe", b"{}", qos=1)
                    with contextlib.suppress(TimeoutError):
                        await sub.wait_for(lambda: any(t.endswith("/probe") for _, t, _ in sub.seen) or None, 0.2,
                                           "probe")
                        break
                else:
                    raise TimeoutError("mosquitto_sub did not subscribe within 10 s")
                async with App(cfg, backend=ScriptedBackend()) as app:
                    await sub.wait_for(lambda: _first(sub, 0, status_t, "armed"), 20, "the first status")
                    lat: dict[str, list[float]] = {"arming": [], "status": []}
                    for i in range(n):
                        armed = i % 2 == 1  # OFF first: the camera starts armed
                        want = "armed" if armed else "disarmed"
                        mark = len(sub.seen)
                        t0 = time.time()
                        await client.publish(f"{PREFIX}/{CAMERA}/arming/set", b"ON" if armed else b"OFF", qos=1)
                        for key, topic in (("arming", arming_t), ("status", status_t)):
                            got = await sub.wait_for(functools.partial(_first, sub, mark, topic, want), 10,
                                                     f"{key} {want} after command {i}")
                            lat[key].append(got - t0)
                        await asyncio.sleep(interval)
                    scored = app.counters[CAMERA].scored
        finally:
            broker.kill()
    return {"commands": n, "interval_s": interval, "segments_scored": scored,
            "command_to_arming": _stats(lat["arming"]), "command_to_status": _stats(lat["status"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", type=int, default=200, help="commands (alternating OFF / ON)")
    ap.add_argument("--interval", type=float, default=0.05, help="pause between commands (s)")
    args = ap.parse_args(argv)
    if args.n < 2 or args.interval < 0:
        print("bench_arming: -n must be >= 2 and --interval >= 0", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(bench(args.n, args.interval)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
