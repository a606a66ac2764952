"""Bus-to-page latency of the group page: how long after a monitor publishes a score on MQTT a browser's live
stream (`/api/stream`) of a `corevad-stream web` process carries it.

Starts a real Mosquitto, the web process's server in-process (group_page.serve: the bus view and the HTTP
server), one SSE client (httpx), and a publisher that sends `--rate` scores a second spread over `--cameras`
cameras for `--seconds`. Same machine, same clock: latency = received - published. Prints p50/p99/max and how
many arrived as JSON.

    .venv/bin/python tools/bench_group_page.py [--cameras 20] [--rate 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import numpy as np

from corevad_stream.config.web_only import web_config_from_dict
from corevad_stream.group_page import serve
from corevad_stream.testing import Mosquitto


async def bench(cameras: int, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            cfg = web_config_from_dict({"mqtt": {"host": broker.host, "port": broker.port, "prefix": "bench"},
                                        "store": {"enabled": False}, "metrics": {"port": 0}})
            stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
            server = asyncio.create_task(serve(cfg, stop=stop, on_ready=lambda s, v: ready.set_result((s, v))))
            http, view = await asyncio.wait_for(ready, 30)
            await view.wait_connected(30)
            sent: dict[int, float] = {}
            got: dict[int, float] = {}
            total = int(rate * seconds)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as client, \
                    client.stream("GET", "/api/stream") as stream:

                async def read() -> None:
                    async for line in stream.aiter_lines():
                        if line.startswith("data: "):
                            m = json.loads(line[6:])
                            if m["kind"] == "score":
                                got[m["payload"]["index"]] = time.perf_counter()
                                if len(got) >= total:
                                    return

                reader = asyncio.create_task(read())
                async with aiomqtt.Client(broker.host, broker.port) as pub:
                    t0 = time.perf_counter()
                    for i in range(total):
                        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                        payload = {"index": i, "start": float(i), "end": i + 1.0, "score": 0.1, "available": True,
                                   "label": 0.0, "description": "People walk past."}
                        sent[i] = time.perf_counter()
                        await pub.publish(f"bench/cam{i % cameras}/score", json.dumps(payload), qos=0)
                try:
                    await asyncio.wait_for(reader, 10)
                except TimeoutError:
                    reader.cancel()
            stop.set()
            await server
        finally:
            broker.kill()
    lat = np.array([(got[i] - sent[i]) * 1000 for i in got if i in sent])
    return {"cameras": cameras, "rate_per_s": rate, "seconds": seconds, "published": total, "received": len(got),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "latency_ms_max": round(float(lat.max()), 2) if len(lat) else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--rate", type=float, default=50.0, help="Scores per second over all cameras.")
    p.add_argument("--seconds", type=float, default=20.0)
    a = p.parse_args()
    print(json.dumps(asyncio.run(bench(a.cameras, a.rate, a.seconds))))


if __name__ == "__main__":
    main()
