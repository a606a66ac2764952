"""What the method loses without the normal segments' descriptions (describe: on_demand), measured on the
recorded UCF-Crime answers, in one command.

The recorded InternVL2-8B answers are replayed through the live path (App, replay backend, the text encoder
in the worker) with configs/replay_ucf_text.yaml (text-anchored context: the one stage whose
scores read the descriptions), five times:
  all                  the answers as recorded (the paper's describe: all);
  on_demand            every "Normal" answer reduced to its verdict line "Normal scenes." (ReplayBackend
                       describe="on_demand"), the same alert thresholds;
  on_demand, re-tuned  the same, with the alert thresholds chosen again on the tune half by tune_text.py's
                       rule (<= --fa-budget false alerts/h of normal video, then most detected, then the
                       lowest median delay; the grid of tune_causal.OPEN_THRESHOLDS);
  deferred             on_demand delivered in two phases, as the runtime does with a backend that splits
                       (ReplayBackend describe="deferred"): scoring sees only verdict lines for every segment,
                       the anomalous answers' descriptions arrive after their verdicts and reach only the
                       explanations (the scores are exactly those of live two-phase delivery);
  deferred, re-tuned   the same, thresholds re-tuned on the tune half by the same rule.
Per half (tune / test / all): frame AUC and AP, false alerts per hour, anomalous videos detected, median delay,
the explanation class-hit rate (tools/explain_hits.py's measure: an alert's first sentence classified among the
13 class names), 95 % video-level bootstrap intervals and the paired bootstrap of each run's difference from
"all" on the same videos (corevad.bootstrap).

    .venv/bin/python tools/describe_quality.py [--data ../shared/data] [--resamples 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from corevad.benchmarks import load_benchmark, load_responses, match_responses
from corevad.bootstrap import bootstrap, paired_bootstrap
from corevad.files import read_yaml_mapping
from corevad.models import ReplayBackend
from corevad.models.text import DEFAULT_TEXT_MODEL, load_text_encoder
from corevad.splits import split_names
from corevad.tuning import OPEN_THRESHOLDS, choose_alerts  # the protocol's alert rule
from corevad_stream.config import shipped_config
from corevad_stream.replay import (
    alert_figures,
    explanation_class_hits,
    frameless_inputs,
    online_figures,
    run_replay,
)
from corevad_stream.replay_cli import video_statistics

REPO = Path(__file__).resolve().parent.parent


async def run(args: argparse.Namespace) -> dict[str, Any]:
    d = args.data / "ucf_crime"
    videos = load_benchmark("ucf-crime", d / "test_annotations.tsv")
    responses = load_responses(d / "VLM_responses_LRC_ucf.json")
    pairs, _ = match_responses(videos, responses, 30)
    videos = [v for v, _ in pairs]
    half_of = split_names(videos)
    cfg = read_yaml_mapping(shipped_config("replay_ucf_text.yaml"), what="replay config")
    refinement = {**cfg["refinement"], "text_context": True}
    enc = load_text_encoder(DEFAULT_TEXT_MODEL, disk_cache=True)
    runs: dict[str, Any] = {}
    chosen: dict[str, Any] = {"all": cfg["alerts"], "on_demand": cfg["alerts"], "deferred": cfg["alerts"]}

    async def replay(describe: str, alerts: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        backend = ReplayBackend(responses, describe=describe)
        result = await run_replay(frameless_inputs(videos), backend=backend, text_encoder=enc,
                                  refinement=refinement, alerts=alerts)
        print(f"  replayed describe {describe} ({backend.undescribed} descriptions removed, {backend.deferred} "
              f"deferred) in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        return result

    def retune(name: str) -> dict[str, Any]:
        tune = [v for v in runs[name].videos if half_of[v.gt.name] == "tune"]
        ap_sel, _, _ = choose_alerts(tune, [v.segment_scores for v in tune], runs[name].params.delay,
                                     args.fa_budget, OPEN_THRESHOLDS)
        return {**cfg["alerts"], "open_threshold": ap_sel.open_threshold, "close_threshold": ap_sel.close_threshold,
                "close_after_s": ap_sel.close_after_s, "cooldown_s": ap_sel.cooldown_s}

    runs["all"] = await replay("all", cfg["alerts"])
    for mode in args.modes:
        runs[mode] = await replay(mode, cfg["alerts"])
        chosen[f"{mode}, re-tuned"] = retune(mode)
        runs[f"{mode}, re-tuned"] = await replay(mode, chosen[f"{mode}, re-tuned"])
    enc.save()
    chosen = {k: v for k, v in chosen.items() if k in runs}
    out: dict[str, Any] = {"config": "configs/replay_ucf_text.yaml", "fa_budget": args.fa_budget,
                           "resamples": args.resamples, "seed": args.seed, "alerts": chosen, "halves": {}}
    for half in ("tune", "test", "all"):
        rows = {}
        base_stats = None
        for name, result in runs.items():
            vids = [v for v in result.videos if half == "all" or half_of[v.gt.name] == half]
            fig, al = online_figures(result, vids), alert_figures(result, vids)
            stats = video_statistics(result, vids)
            row: dict[str, Any] = {
                "auc": fig.auc, "ap": fig.ap, "false_alerts_per_hour": al.false_alerts_per_hour,
                "detected": al.detected, "anomalous_videos": al.anomalous_videos, "median_delay_s": al.median_delay_s,
                "explanations": explanation_class_hits(vids, enc),
                "intervals": {k: bootstrap(f, len(vids), n_resamples=args.resamples, seed=args.seed).to_dict()
                              for k, f in stats.items()}}
            if base_stats is None:
                base_stats = stats
            else:
                row["minus_all"] = {k: paired_bootstrap(stats[k], base_stats[k], len(vids),
                                                        n_resamples=args.resamples, seed=args.seed).to_dict()
                                    for k in stats}
            rows[name] = row
        out["halves"][half] = rows
    return out


def _iv(i: dict[str, float], scale: float) -> str:
    return f"[{scale * i['low']:.2f}, {scale * i['high']:.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--fa-budget", type=float, default=3.0, help="false alerts/h of normal video on the tune half")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--modes", nargs="+", choices=("on_demand", "deferred"), default=["on_demand", "deferred"],
                    help="the describe modes compared with all (each also re-tuned)")
    args = ap.parse_args(argv)
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for half, rows in res["halves"].items():
        print(f"\n{half}:")
        for name, r in rows.items():
            iv = r["intervals"]
            line = (f"  {name:20s} AUC {100 * r['auc']:.2f} {_iv(iv['auc'], 100)}  AP {100 * r['ap']:.2f} "
                    f"{_iv(iv['ap'], 100)}  FA/h {r['false_alerts_per_hour']:.2f} "
                    f"{_iv(iv['false_alerts_per_hour'], 1)}  detected {r['detected']}/{r['anomalous_videos']}  "
                    f"median delay {r['median_delay_s']:.1f} s  class hits {r['explanations']['hits']}/"
                    f"{r['explanations']['alerts']}")
            if "minus_all" in r:
                m = r["minus_all"]
                line += (f"\n  {'':20s} minus all: AUC {100 * m['auc']['estimate']:+.2f} {_iv(m['auc'], 100)}  "
                         f"AP {100 * m['ap']['estimate']:+.2f} {_iv(m['ap'], 100)}  FA/h "
                         f"{m['false_alerts_per_hour']['estimate']:+.2f} {_iv(m['false_alerts_per_hour'], 1)}")
            print(line)
    print(f"\nalert thresholds: {json.dumps(res['alerts'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
