"""Choose the online (causal) parameters on the tune half of UCF-Crime; report them on the held-out half.

The protocol (README "Tuning protocol"):
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
import itertools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from corevad.alerts import AlertParams, AlertTracker
from corevad.benchmarks import VideoGT, load_benchmark, load_probabilities, load_responses, match_responses
from corevad.errors import DataError
from corevad.evaluate import scored_labels
from corevad.latency import delay_stats, detection_delay, false_alerts_per_hour, laap_approx
from corevad.metrics import frame_ap, frame_auc
from corevad.params import CausalParams, OfflineParams
from corevad.pipeline import score_causal, score_offline
from corevad.prompt import parse_answer
from corevad.refine import causal_kernel
from corevad.splits import split_videos
from corevad.types import Verdict

REPO = Path(__file__).resolve().parent.parent
SEG = 30
FPS = 30.0

SMOOTH_LENGTHS = (1, 3, 5, 7, 9, 12, 15, 20, 30)
SMOOTH_SIGMAS = (2.0, 5.0, 10.0)
SMOOTH_LOOKAHEADS = (0, 1, 2)
# 0.999: "every tap of the smoothing window anomalous" (text-only scores reach 1 only up to rounding).
OPEN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.999)
CLOSE_GAPS = (0.0, 0.3)  # close_threshold = open_threshold - gap
CLOSE_AFTER_S = (0.0, 3.0, 10.0, 30.0)
COOLDOWN_S = (0.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class Video:
    gt: VideoGT
    labels: np.ndarray


def load_answers(data: Path, responses: Path | None = None, probabilities: Path | None = None
                 ) -> list[tuple[VideoGT, list[Verdict], np.ndarray]]:
    """UCF-Crime's test videos with their parsed answers and what each segment scores: the label, or
    P(Anomalous) from a probabilities file (corevad generate's sidecar) where it has one."""
    videos = load_benchmark("ucf-crime", data / "ucf_crime" / "test_annotations.tsv")
    answers = load_responses(responses or data / "ucf_crime" / "VLM_responses_LRC_ucf.json")
    probs = load_probabilities(probabilities) if probabilities else None
    pairs, _ = match_responses(videos, answers, SEG)
    out = []
    for v, ans in pairs:
        if probs is not None and v.name not in probs:
            raise DataError(f"video {v.name!r} is missing from the probabilities file {probabilities}")
        verdicts = [parse_answer(a) for a in ans]
        out.append((v, verdicts, scored_labels(v.name, verdicts, None if probs is None else probs[v.name])))
    return out


def load(data: Path, responses: Path | None = None, probabilities: Path | None = None) -> list[Video]:
    return [Video(v, values) for v, _, values in load_answers(data, responses, probabilities)]


def halves(videos: Sequence[Any]) -> dict[str, list[Any]]:
    """The fixed split (corevad.splits) of loaded videos: "tune", "test", and "all" in load order."""
    names = {h: {g.name for g in split_videos([v.gt for v in videos], h)} for h in ("tune", "test")}
    return {"tune": [v for v in videos if v.gt.name in names["tune"]],
            "test": [v for v in videos if v.gt.name in names["test"]], "all": list(videos)}


def add_answer_args(ap: argparse.ArgumentParser) -> None:
    """What the tuning tools read and how they choose alert thresholds (--data, --responses, --probabilities,
    --search-thresholds)."""
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--responses", type=Path, help="answers to tune on (default: the authors' recorded ones)")
    ap.add_argument("--probabilities", type=Path,
                    help="P(Anomalous) per segment (corevad generate's <out stem>.p_anomalous.json), scored "
                         "instead of the labels where known")
    ap.add_argument("--search-thresholds", action="store_true",
                    help="search the open threshold over the tune scores instead of the fixed grid (for "
                         "continuous scores such as label probabilities)")


def fast_causal_smooth(x: np.ndarray, length: int, sigma: float, lookahead: int) -> np.ndarray:
    """corevad.refine.causal_smooth by convolution (the grid is large); checked against it in main()."""
    taps = causal_kernel(length, sigma, lookahead)
    num = np.convolve(x, taps)[lookahead:lookahead + len(x)]
    den = np.convolve(np.ones_like(x), taps)[lookahead:lookahead + len(x)]
    return num / den


def frames(seg_scores: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(seg_scores, SEG)[:n]


def score_metrics(videos: list[Video], seg_scores: list[np.ndarray], delay: int) -> dict[str, float]:
    fs = [frames(s, v.gt.frames) for v, s in zip(videos, seg_scores, strict=True)]
    gt = np.concatenate([v.gt.gt for v in videos])
    s = np.concatenate(fs)
    return {"auc": frame_auc(gt, s), "ap": frame_ap(gt, s),
            "laap": laap_approx(fs, [v.gt.spans for v in videos], latency_frames=delay * SEG)}


def simulate_alerts(seg_scores: np.ndarray, n_frames: int, params: AlertParams) -> list[tuple[float, float]]:
    """The alert intervals corevad.alerts.AlertTracker opens on one video, in video seconds.

    Fed as the runtime feeds it: segment i = [i, i + 1) s of stream, clock = the segment's end.
    """
    tracker = AlertTracker("tune", params)
    out = []
    for i, score in enumerate(seg_scores):
        end = min((i + 1) * SEG, n_frames) / FPS
        for ev in tracker.update(index=i, start=i * SEG / FPS, end=end, score=float(score)):
            if ev.type == "end" and ev.after.end_time is not None:
                out.append((ev.after.start_time, ev.after.end_time))
    for ev in tracker.close():
        if ev.after.end_time is not None:
            out.append((ev.after.start_time, ev.after.end_time))
    return out


def alert_metrics(videos: list[Video], seg_scores: list[np.ndarray], params: AlertParams,
                  delay: int) -> dict[str, float]:
    delays: list[float | None] = []
    normal = []
    for v, s in zip(videos, seg_scores, strict=True):
        alerts = simulate_alerts(s, v.gt.frames, params)
        if v.gt.is_anomalous:
            # published once the opening segment's score is final: (lookahead + 1) segments after its start
            delays.append(detection_delay(v.gt.spans, alerts, FPS, latency_s=(delay + 1) * SEG / FPS))
        else:
            normal.append((v.gt.frames, v.gt.spans, alerts))
    st = delay_stats(delays)
    fa = false_alerts_per_hour(normal, FPS)
    return {"detected": st.detected, "anomalous_videos": st.videos, "detection_rate": st.detection_rate,
            # detections by an alert published before the GT start (delay 0): the VLM flagged the scene early
            "alerted_before_onset": sum(1 for d in delays if d == 0.0),
            "median_delay_s": st.median_s, "p90_delay_s": st.p90_s, "false_alerts": fa.false_alerts,
            "normal_hours": fa.hours, "false_alerts_per_hour": fa.per_hour}


def tune_scores(tune: list[Video]) -> tuple[CausalParams, list[dict[str, Any]]]:
    rows = []
    for length, sigma, la in itertools.product(SMOOTH_LENGTHS, SMOOTH_SIGMAS, SMOOTH_LOOKAHEADS):
        seg = [fast_causal_smooth(v.labels, length, sigma, la) for v in tune]
        rows.append({"smooth_length": length, "smooth_sigma": sigma, "smooth_lookahead": la,
                     **score_metrics(tune, seg, la)})
    best = max(rows, key=lambda r: (round(r["laap"], 4), round(r["auc"], 4)))
    params = CausalParams(smooth_length=int(best["smooth_length"]), smooth_sigma=float(best["smooth_sigma"]),
                          smooth_lookahead=int(best["smooth_lookahead"]))
    return params, rows


def tune_alerts(tune: list[Video], params: CausalParams, fa_budget: float, *, search: bool = False
                ) -> tuple[AlertParams, list[dict[str, Any]]]:
    seg = [fast_causal_smooth(v.labels, params.smooth_length, params.smooth_sigma, params.smooth_lookahead)
           for v in tune]
    if search:
        alerts, best = choose_alerts_fine(tune, seg, params.delay, fa_budget)
        return alerts, [{k: v for k, v in best.items() if k != "params"}]
    alerts, rows, _ = choose_alerts(tune, seg, params.delay, fa_budget)
    return alerts, rows


def choose_alerts(videos: Sequence[Any], seg: list[np.ndarray], delay: int, fa_budget: float,
                  open_thresholds: Sequence[float] = OPEN_THRESHOLDS
                  ) -> tuple[AlertParams, list[dict[str, Any]], dict[str, Any]]:
    """The alert rule on given scores: <= fa_budget false alerts/h (else the fewest), then the most detected
    anomalous videos, then the lowest median delay. Returns the choice, every grid row and the chosen row."""
    rows = []
    for thr, gap, after, cool in itertools.product(open_thresholds, CLOSE_GAPS, CLOSE_AFTER_S, COOLDOWN_S):
        ap = AlertParams(open_threshold=thr, close_threshold=round(thr - gap, 3),
                         close_after_s=after, cooldown_s=cool)
        rows.append({**_alert_dict(ap), **alert_metrics(videos, seg, ap, delay)})
    ok = [r for r in rows if r["false_alerts_per_hour"] <= fa_budget] or \
        [min(rows, key=lambda r: r["false_alerts_per_hour"])]
    best = max(ok, key=lambda r: (r["detected"], -_nan_big(r["median_delay_s"]), -r["false_alerts_per_hour"]))
    return AlertParams(open_threshold=best["open_threshold"], close_threshold=best["close_threshold"],
                       close_after_s=best["close_after_s"], cooldown_s=best["cooldown_s"]), rows, best


def _rule(r: dict[str, Any]) -> tuple[float, float, float]:
    """The alert rule's order (larger is better): most detected, lowest median delay, fewest false alerts."""
    return (r["detected"], -_nan_big(r["median_delay_s"]), -r["false_alerts_per_hour"])


def choose_alerts_fine(videos: Sequence[Any], seg: list[np.ndarray], delay: int, budget: float
                       ) -> tuple[AlertParams, dict[str, Any]]:
    """choose_alerts with the open threshold searched over the scores themselves (--search-thresholds):
    for each hysteresis setting of the grid, the lowest score value (>= 0.3, 4 decimals) that keeps the
    budget (false alerts fall as the threshold rises; binary search). A fixed grid misses the operating
    point of continuous scores (label probabilities, refined scores). None within budget: the fewest."""
    values = np.unique(np.round(np.concatenate(seg), 4))
    values = values[values >= 0.3]

    def run(thr: float, gap: float, after: float, cool: float) -> dict[str, Any]:
        ap = AlertParams(open_threshold=float(thr), close_threshold=round(max(0.0, float(thr) - gap), 4),
                         close_after_s=after, cooldown_s=cool)
        return {"params": ap, **alert_metrics(videos, seg, ap, delay)}  # type: ignore[arg-type]

    rows = []
    for gap, after, cool in itertools.product(CLOSE_GAPS, CLOSE_AFTER_S, COOLDOWN_S):
        lo, hi = 0, len(values) - 1
        top = run(values[hi], gap, after, cool)
        rows.append(top)
        if top["false_alerts_per_hour"] > budget:
            continue
        while lo < hi:  # values[hi] keeps the budget
            mid = (lo + hi) // 2
            row = run(values[mid], gap, after, cool)
            if row["false_alerts_per_hour"] <= budget:
                hi = mid
                rows.append(row)
            else:
                lo = mid + 1
    ok = [r for r in rows if r["false_alerts_per_hour"] <= budget] or \
        [min(rows, key=lambda r: r["false_alerts_per_hour"])]
    best = max(ok, key=_rule)
    return best["params"], best


def _alert_dict(ap: AlertParams) -> dict[str, float]:
    return {"open_threshold": ap.open_threshold, "close_threshold": ap.close_threshold,
            "close_after_s": ap.close_after_s, "cooldown_s": ap.cooldown_s}


def _nan_big(x: float) -> float:
    return 1e9 if x != x else x


def report(videos: list[Video], params: CausalParams, alerts: AlertParams) -> dict[str, Any]:
    """Online (method core's score_causal) and offline (paper mode) figures on one set of videos."""
    online = [score_causal(v.labels, v.gt.frames, params).segment_scores for v in videos]
    off = [score_offline(v.labels, v.gt.frames, OfflineParams()).frame_scores for v in videos]
    gt = np.concatenate([v.gt.gt for v in videos])
    offline = {"auc": frame_auc(gt, np.concatenate(off)), "ap": frame_ap(gt, np.concatenate(off)),
               "laap": laap_approx(off, [v.gt.spans for v in videos])}
    return {"videos": len(videos), "online": {**score_metrics(videos, online, params.delay),
                                              **alert_metrics(videos, online, alerts, params.delay)},
            "offline": offline}


def write_config(path: Path, params: CausalParams, alerts: AlertParams, summary: dict[str, Any],
                 fa_budget: float) -> None:
    tune, test, full = (summary["report"][k]["online"] for k in ("tune", "test", "all"))
    head = [
        "# Online (causal) parameters for replaying UCF-Crime, chosen by tools/tune_causal.py.",
        "# Protocol: tune/test split of corevad.splits (sorted names alternate within each class);",
        "# score parameters maximise LaAP≈ on the tune half (lookahead charged as latency), alert",
        f"# parameters maximise detected anomalous videos with <= {fa_budget:g} false alerts/hour of normal",
        "# video on the tune half. Nothing here was chosen on the test half. Tuned text-only (the recorded",
        "# answers have no CLIP features): tau, refine_window and LRC keep their defaults, and a replay of",
        "# decoded videos with a CLIP encoder uses them untuned (re-run the protocol with features).",
        f"# tune  half: AUC {tune['auc']:.4f}  AP {tune['ap']:.4f}  LaAP≈ {tune['laap']:.4f}  "
        f"FA/h {tune['false_alerts_per_hour']:.2f}  median delay {tune['median_delay_s']:.1f} s",
        f"# test  half: AUC {test['auc']:.4f}  AP {test['ap']:.4f}  LaAP≈ {test['laap']:.4f}  "
        f"FA/h {test['false_alerts_per_hour']:.2f}  median delay {test['median_delay_s']:.1f} s",
        f"# full  set : AUC {full['auc']:.4f}  AP {full['ap']:.4f}  LaAP≈ {full['laap']:.4f}  "
        f"FA/h {full['false_alerts_per_hour']:.2f}  median delay {full['median_delay_s']:.1f} s",
    ]
    body = {
        "dataset": "ucf-crime",
        "refinement": {"smooth_length": params.smooth_length, "smooth_sigma": params.smooth_sigma,
                       "smooth_lookahead": params.smooth_lookahead, "lrc_lookahead": params.lrc_lookahead},
        "alerts": _alert_dict(alerts),
    }
    path.write_text("\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_answer_args(ap)
    ap.add_argument("--out", type=Path, default=REPO / "configs" / "replay_ucf.yaml")
    ap.add_argument("--fa-budget", type=float, default=6.0,
                    help="most false alerts per hour of normal video (default 6: one per 10 min per camera)")
    ap.add_argument("--json", action="store_true", help="print the full summary (grids included) as JSON")
    ap.add_argument("--no-write", action="store_true", help="do not write --out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    videos = load(args.data, args.responses, args.probabilities)
    sets = halves(videos)
    tune, test = sets["tune"], sets["test"]
    params, score_rows = tune_scores(tune)
    # The fast smoother must equal the method core's, or the grid chose on the wrong numbers.
    for v in tune[:20]:
        ref = score_causal(v.labels, v.gt.frames, params).segment_scores
        fast = fast_causal_smooth(v.labels, params.smooth_length, params.smooth_sigma, params.smooth_lookahead)
        if not np.allclose(ref, fast, atol=1e-9):
            raise SystemExit(f"fast smoother disagrees with score_causal on {v.gt.name}")
    alerts, alert_rows = tune_alerts(tune, params, args.fa_budget, search=args.search_thresholds)
    summary = {"causal": asdict(params), "alerts": _alert_dict(alerts), "fa_budget": args.fa_budget,
               "report": {"tune": report(tune, params, alerts), "test": report(test, params, alerts),
                          "all": report(videos, params, alerts)},
               "seconds": time.perf_counter() - t0}
    if not args.no_write:
        write_config(args.out, params, alerts, summary, args.fa_budget)
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
