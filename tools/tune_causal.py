"""Choose the online (causal) parameters on the tune half of UCF-Crime; report them on the held-out half.

The protocol (README "Tuning protocol"; the logic is corevad.tuning, this is its command line):
  1. Split the 290 UCF-Crime test videos with corevad.splits (by video, stratified by class, fixed rule).
  2. Score parameters (smooth_length, smooth_sigma, smooth_lookahead) are chosen on the tune half only,
     by the highest LaAP≈ (corevad.latency.laap_approx), which charges each configuration its lookahead
     as detection latency, so a longer wait for future segments must pay for itself; ties -> higher AUC.
     The recorded answers are already LRC-cleaned offline and no CLIP features exist here, so the run is
     text-only: LRC lookahead, tau and refine_window do not apply and keep their defaults.
  3. Alert parameters (open/close thresholds, close_after_s, cooldown_s) are chosen on the tune half only,
     with the chosen scores, by: false alerts per hour of normal video <= --fa-budget, then the most
     anomalous videos detected (an alert overlapping a GT span), then the lowest median delay.
  4. The chosen values are reported on the held-out half and on the full set (never chosen there), and
     written to configs/replay_ucf.yaml.

Run: .venv/bin/python tools/tune_causal.py [--data ../shared/data] [--out configs/replay_ucf.yaml] [--json]

With answers recorded by `corevad generate` (e.g. on a GPU, with label probabilities), add --responses R.json
--probabilities R.p_anomalous.json --out other.yaml: each segment then scores its P(Anomalous); with such
continuous scores add --search-thresholds (the fixed open-threshold grid misses their operating point).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from corevad.cli.tuning import add_answer_args
from corevad.tuning import (
    alert_dict,
    causal_config_text,
    causal_report,
    halves,
    load_videos,
    smoother_disagreement,
    tune_alerts,
    tune_scores,
)

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_answer_args(ap, default_data=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "configs" / "replay_ucf.yaml")
    ap.add_argument("--fa-budget", type=float, default=6.0,
                    help="most false alerts per hour of normal video (default 6: one per 10 min per camera)")
    ap.add_argument("--json", action="store_true", help="print the full summary (grids included) as JSON")
    ap.add_argument("--no-write", action="store_true", help="do not write --out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    videos = load_videos(args.data, args.responses, args.probabilities)
    sets = halves(videos)
    tune, test = sets["tune"], sets["test"]
    params, score_rows = tune_scores(tune)
    # The fast smoother must equal the method core's, or the grid chose on the wrong numbers.
    bad = smoother_disagreement(tune[:20], params)
    if bad is not None:
        raise SystemExit(f"fast smoother disagrees with score_causal on {bad}")
    alerts, alert_rows = tune_alerts(tune, params, args.fa_budget, search=args.search_thresholds)
    summary = {"causal": asdict(params), "alerts": alert_dict(alerts), "fa_budget": args.fa_budget,
               "report": {"tune": causal_report(tune, params, alerts), "test": causal_report(test, params, alerts),
                          "all": causal_report(videos, params, alerts)},
               "seconds": time.perf_counter() - t0}
    if not args.no_write:
        args.out.write_text(causal_config_text(params, alerts, summary["report"], args.fa_budget), encoding="utf-8")
    if args.json:
        json.dump({**summary, "score_grid": score_rows, "alert_grid": alert_rows}, sys.stdout, indent=1)
        print()
    else:
        print(json.dumps({k: summary[k] for k in ("causal", "alerts", "fa_budget")}, indent=1))
        for half in ("tune", "test", "all"):
            r = summary["report"][half]
            on, off = r["online"], r["offline"]
            print(f"{half:5s} ({r['videos']} videos): online AUC {on['auc']:.4f} AP {on['ap']:.4f} "
                  f"LaAP≈ {on['laap']:.4f} | offline AUC {off['auc']:.4f} AP {off['ap']:.4f} "
                  f"LaAP≈ {off['laap']:.4f} | detected {on['detected']}/{on['anomalous_videos']} "
                  f"median {on['median_delay_s']:.1f} s p90 {on['p90_delay_s']:.1f} s "
                  f"FA/h {on['false_alerts_per_hour']:.2f}")
        print(f"done in {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
