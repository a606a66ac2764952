"""Measure the full UCF-Crime evaluation: AUC/AP of the text-only offline and the causal protocols, wall time.

    .venv/bin/python tools/bench_eval.py [--data ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from corevad.benchmarks import load_benchmark, load_responses
from corevad.config import load_method_params
from corevad.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    d = Path(args.data) / "ucf_crime"
    offline, causal = load_method_params()
    rows = {}
    for mode in ("offline", "causal"):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            videos = load_benchmark("ucf-crime", d / "test_annotations.tsv")
            responses = load_responses(d / "VLM_responses_LRC_ucf.json")
            res = evaluate(videos, responses, mode=mode, offline=offline, causal=causal)
            times.append(time.perf_counter() - t0)
        rows[mode] = {"auc": round(100 * res.auc, 2), "ap": round(100 * res.ap, 2), "segments": res.segments,
                      "wall_s_median": round(sorted(times)[len(times) // 2], 3), "wall_s_min": round(min(times), 3)}
    print(json.dumps({"dataset": "ucf-crime", "protocols": rows,
                      "offline_params": str(offline), "causal_params": str(causal)}, indent=2))


if __name__ == "__main__":
    main()
