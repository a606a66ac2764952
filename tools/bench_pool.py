"""Segments/s through the openai backend with 1 vs N replicas of `transformers serve` on loopback.

Starts N `transformers serve` processes serving the tiny random InternVL on the CPU, sends the same
segments (8 frames of 48x48) through one OpenAIBackend whose base_url lists the replicas (the pool:
least-loaded, retries elsewhere), and reports segments/s for each pool size. On a machine with few cores
the replicas share the CPU, so this measures the pool's overhead and spreading, not GPU scaling.

    .venv/bin/python tools/bench_pool.py [--replicas 1 3] [--segments 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from corevad.models import Clip, OpenAIOptions, VLMConfig, load_vlm
from corevad.models.tiny import build_tiny_internvl
from corevad_stream.testing import free_port


def start_replica(model: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu"], stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, f"{base}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("transformers serve did not come up in 180 s")


def measure(urls: list[str], model: Path, segments: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    clips = [Clip("cam", i, rng.integers(0, 256, size=(8, 48, 48, 3), dtype=np.uint8)) for i in range(segments)]
    backend = load_vlm(VLMConfig(backend="openai", max_new_tokens=24, openai=OpenAIOptions(
        base_url=urls, model=str(model), max_side=48, api_key_env=None, concurrency=2 * len(urls),
        timeout_s=120)))
    try:
        backend.answer(clips[: len(urls) * 2])  # warm every replica (first request loads the model)
        t0 = time.perf_counter()
        answers = backend.answer(clips)
        dt = time.perf_counter() - t0
        stats = backend.endpoint_stats()  # type: ignore[attr-defined]
    finally:
        backend.close()
    return {"replicas": len(urls), "segments": segments, "seconds": round(dt, 2),
            "segments_per_s": round(segments / dt, 2), "answered": sum(bool(a) for a in answers),
            "per_replica_requests": [s["requests"] for s in stats]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--segments", type=int, default=60)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_internvl(Path(tmp) / "tiny", image_size=112)
        procs: list[subprocess.Popen[bytes]] = []
        urls: list[str] = []
        try:
            for n in sorted(args.replicas):
                while len(urls) < n:
                    proc, url = start_replica(model, Path(tmp) / f"serve{len(urls)}.log")
                    procs.append(proc)
                    urls.append(url)
                rows.append(measure(urls[:n], model, args.segments))
        finally:
            for p in procs:
                p.kill()
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
