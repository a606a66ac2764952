"""Replay throughput (segments/s) of the recorded UCF-Crime answers through the live runtime (replay backend).

Frame-less segments: this measures the runtime itself (sources, batcher, worker thread, causal scoring,
alerts, publishing), not decoding or a model. Each setting runs --repeats times; the best and the median
are printed. Not a test: numbers depend on the machine.

Run: .venv/bin/python tools/bench_replay.py [--data ../shared/data] [--limit N] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
from pathlib import Path

from corevad.benchmarks import load_benchmark, load_responses
from corevad.models.replay import ReplayBackend
from corevad_stream.replay import FRAMELESS_RUNTIME, frameless_inputs, run_replay

REPO = Path(__file__).resolve().parent.parent

SETTINGS = [
    ("replay defaults, 32 cameras", 32, FRAMELESS_RUNTIME),
    ("replay defaults, 8 cameras", 8, FRAMELESS_RUNTIME),
    ("replay defaults, 64 cameras", 64, FRAMELESS_RUNTIME),
    ("live batching (max_wait 20 ms, batch 8, 3 pending), 32 cameras", 32,
     {"max_batch": 8, "max_wait_s": 0.02, "max_pending_per_camera": 3}),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, help="first N videos only (default all 290)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    d = args.data / "ucf_crime"
    videos = load_benchmark("ucf-crime", d / "test_annotations.tsv")[: args.limit]
    backend = ReplayBackend(load_responses(d / "VLM_responses_LRC_ucf.json"))
    rows = []
    for name, conc, runtime in SETTINGS:
        rates, segments = [], 0
        for _ in range(args.repeats):
            r = asyncio.run(run_replay(frameless_inputs(videos), backend=backend, concurrency=conc,
                                       runtime=runtime))
            rates.append(r.segments_per_s)
            segments = r.segments
        row = {"setting": name, "concurrency": conc, "runtime": runtime, "videos": len(videos),
               "segments": segments, "best_segments_per_s": max(rates),
               "median_segments_per_s": statistics.median(rates)}
        rows.append(row)
        if not args.json:
            print(f"{name:66s} {segments:6d} segments  best {max(rates):7.0f}/s  "
                  f"median {statistics.median(rates):7.0f}/s", flush=True)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
