"""Alert latency through MQTT: from "the runtime hands an event over" to "a subscriber has it" (p50/p99).

By default it measures MqttSink.send(event) -> outbox (sqlite) -> publish QoS 1 -> broker -> subscriber,
model time excluded, on a private Mosquitto (and/or the embedded amqtt broker) started here:

    .venv/bin/python tools/bench_alert_latency.py --broker both -n 500 --rate 20 --background 16

measure() takes any trigger callable, so a longer path (e.g. segment end -> scoring -> alerts -> sink)
can be timed with the same subscriber and statistics: the trigger causes exactly one message on the
topic and returns the time.perf_counter() it counts from; the i-th message received answers the i-th
trigger (order is guaranteed on one topic at QoS >= 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corevad_stream.messages import Message
from corevad_stream.sinks.mqtt import MqttConfig, MqttSink

Trigger = Callable[[int], Awaitable[float]]


@dataclass(frozen=True)
class LatencyStats:
    path: str
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, path: str, seconds: list[float]) -> LatencyStats:
        ms = np.asarray(seconds) * 1000.0

        def r(x: float) -> float:
            return round(float(x), 3)

        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(path=path, n=len(ms), p50_ms=r(p50), p90_ms=r(p90), p99_ms=r(p99), max_ms=r(ms.max()),
                   mean_ms=r(ms.mean()))


# The subscriber runs in its own process, as a consumer would (a thread in this process would wait for the
# GIL behind the publisher: that added ~10 ms here). time.perf_counter() is CLOCK_MONOTONIC on Linux, so
# its stamps compare with ours.
_SUBSCRIBER = """
import asyncio, json, sys, time
import aiomqtt

async def main(host, port, topic, auth):
    async with aiomqtt.Client(host, int(port), identifier="bench-latency-sub", **json.loads(auth)) as client:
        await client.subscribe(topic, qos=1)
        print("READY", flush=True)
        async for _ in client.messages:
            sys.stdout.write(f"{time.perf_counter()!r}\\n")
            sys.stdout.flush()

asyncio.run(main(*sys.argv[1:]))
"""


class _Subscriber:
    """An aiomqtt subscriber process that prints the perf_counter() arrival time of every message."""

    def __init__(self, host: str, port: int, topic: str, auth: dict[str, str]) -> None:
        self.args = [host, str(port), topic, json.dumps(auth)]
        self.arrivals: list[float] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SUBSCRIBER, *self.args, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if line.strip() != b"READY":
            raise RuntimeError(f"subscriber could not connect to {self.args[0]}:{self.args[1]}")
        self._reader = asyncio.create_task(self._read(), name="bench.subscriber")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.arrivals.append(float(line))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def measure(
    trigger: Trigger,
    *,
    host: str,
    port: int,
    topic: str,
    n: int = 200,
    rate: float = 20.0,
    warmup: int = 10,
    timeout: float = 60.0,
    auth: dict[str, str] | None = None,
    path: str = "custom",
) -> LatencyStats:
    """Call trigger(i) n + warmup times at `rate` per second and time each to its message at a subscriber."""
    sub = _Subscriber(host, port, topic, auth or {})
    await sub.start()
    starts: list[float] = []
    period = 1.0 / rate
    next_at = time.perf_counter()
    try:
        for i in range(n + warmup):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += period
            starts.append(await trigger(i))
        deadline = time.perf_counter() + timeout
        while len(sub.arrivals) < len(starts):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {len(sub.arrivals)} of {len(starts)} messages arrived on {topic}")
            await asyncio.sleep(0.01)
    finally:
        await sub.stop()
    return LatencyStats.of(path, [a - s for s, a in zip(starts[warmup:], sub.arrivals[warmup:], strict=True)])


@contextlib.asynccontextmanager
async def sink_trigger(sink: MqttSink, *, background_per_s: float = 0.0) -> AsyncIterator[Trigger]:
    """A trigger that sends one alert event through a running MqttSink (optionally beside score traffic)."""
    await sink.wait_connected(30)

    async def background() -> None:
        # Per-segment scores from many cameras: the traffic that alerts must not queue behind.
        i = 0
        while True:
            await sink.send(Message("score", {"score": 0.1, "label": "Normal scenes.", "index": i},
                                    camera=f"cam{i % 16}"))
            i += 1
            await asyncio.sleep(1.0 / background_per_s)

    async def trigger(i: int) -> float:
        after = {"id": f"cam0-{i}", "camera": "cam0", "peak_score": 0.93, "score": 0.91,
                 "explanation": ["A person climbs over the fence at night."]}
        t0 = time.perf_counter()
        await sink.send(Message("events", {"type": "new", "before": None, "after": after}))
        return t0

    task = asyncio.create_task(background(), name="bench.background") if background_per_s > 0 else None
    try:
        yield trigger
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def bench_broker(kind: str, args: argparse.Namespace, workdir: Path) -> LatencyStats:
    common = {"prefix": "bench", "outbox": {"path": str(workdir / f"outbox-{kind}.sqlite3")},
              "qos": {"events": args.qos}}
    if kind == "mosquitto":
        from corevad_stream.testing import Mosquitto  # the same Mosquitto launcher the tests use

        # set_tcp_nodelay: without it Mosquitto delays small packets behind unacknowledged ones (Nagle).
        broker = Mosquitto(workdir / "mosquitto", persistence=False,
                           extra_config=["set_tcp_nodelay true"] if args.nodelay else [])
        broker.start()
        try:
            cfg = MqttConfig.model_validate({**common, "host": broker.host, "port": broker.port})
            async with MqttSink(cfg) as sink, sink_trigger(sink, background_per_s=args.background) as trigger:
                return await measure(trigger, host=broker.host, port=broker.port, topic="bench/events",
                                     n=args.n, rate=args.rate, path="sink -> mosquitto -> subscriber")
        finally:
            broker.kill()
    cfg = MqttConfig.model_validate({**common, "embedded_broker": {"enabled": True, "port": 0}})
    async with MqttSink(cfg) as sink, sink_trigger(sink, background_per_s=args.background) as trigger:
        assert sink.broker is not None
        return await measure(trigger, host="127.0.0.1", port=sink.broker.port, topic="bench/events",
                             n=args.n, rate=args.rate, path="sink -> embedded amqtt -> subscriber")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["mosquitto", "embedded", "both"], default="mosquitto")
    parser.add_argument("-n", type=int, default=500, help="events measured (after 10 warm-up events)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--background", type=float, default=16.0,
                        help="score messages per second sent meanwhile (0 = none)")
    parser.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="QoS of event messages")
    parser.add_argument("--no-nodelay", dest="nodelay", action="store_false",
                        help="run Mosquitto without set_tcp_nodelay (its default)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args(argv)

    kinds = ["mosquitto", "embedded"] if args.broker == "both" else [args.broker]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-alert-") as tmp:
        for kind in kinds:
            results.append(asyncio.run(bench_broker(kind, args, Path(tmp))))
    for r in results:
        if args.json:
            print(json.dumps({**asdict(r), "rate_per_s": args.rate, "background_per_s": args.background,
                              "qos": args.qos}))
        else:
            print(f"{r.path:40s} n={r.n}  p50 {r.p50_ms:7.2f} ms  p90 {r.p90_ms:7.2f} ms  "
                  f"p99 {r.p99_ms:7.2f} ms  max {r.max_ms:7.2f} ms  (events {args.rate:g}/s QoS {args.qos}, "
                  f"scores {args.background:g}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
