"""How often an alert's first sentence names the right crime: explanation ranking measured on UCF-Crime.

The recorded InternVL2-8B answers are replayed through the live path (App, replay backend, the text
encoder in the worker) with the refinement and alert settings of configs/replay_ucf_text.yaml.
For every alert that overlaps a ground-truth span of an anomalous video, its first sentence is classified
zero-shot among the 13 UCF-Crime class names with the same text encoder ("a video of <class>"); a hit is
the video's class. Run twice: drivers ranked by weight (today) and by weight x support (corevad.explain).

    .venv/bin/python tools/explain_hits.py [--data ../shared/data] [--half all|tune|test] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from corevad.benchmarks import load_benchmark, load_responses, match_responses
from corevad.files import read_yaml_mapping
from corevad.models import ReplayBackend
from corevad.models.text import DEFAULT_TEXT_MODEL, load_text_encoder
from corevad.splits import split_videos
from corevad_stream.config import shipped_config
from corevad_stream.replay import explanation_class_hits, frameless_inputs, run_replay

REPO = Path(__file__).resolve().parent.parent


async def run(args: argparse.Namespace) -> dict[str, Any]:
    d = args.data / "ucf_crime"
    videos = split_videos(load_benchmark("ucf-crime", d / "test_annotations.tsv"), args.half)
    responses = load_responses(d / "VLM_responses_LRC_ucf.json")
    pairs, _ = match_responses(videos, responses, 30)
    cfg = read_yaml_mapping(shipped_config("replay_ucf_text.yaml"), what="replay config")
    refinement = {**cfg["refinement"], "text_context": True}
    enc = load_text_encoder(DEFAULT_TEXT_MODEL, disk_cache=True)
    out: dict[str, Any] = {}
    for ranked in (False, True):
        t0 = time.perf_counter()
        result = await run_replay(frameless_inputs([v for v, _ in pairs]), backend=ReplayBackend(responses),
                                  text_encoder=enc, refinement=refinement,
                                  alerts={**cfg["alerts"], "rank_explanations": ranked})
        out["support" if ranked else "weight"] = {**explanation_class_hits(result.videos, enc),
                                                  "seconds": round(time.perf_counter() - t0, 1)}
    enc.save()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--half", default="all", choices=("all", "tune", "test"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for k, r in res.items():
        print(f"ranked by {k:8s}: first sentence names the video's class in {r['hits']}/{r['alerts']} alerts "
              f"({100 * r['hit_rate']:.1f} %), replay {r['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
