"""The tuning protocol: how the online (causal) parameters and the alert thresholds are chosen on UCF-Crime.

README "Tuning protocol". The 290 UCF-Crime test videos are split by corevad.splits (by video, stratified
by class, fixed rule) into a tune half and a test half; every choice is made on the tune half only and then
reported on the test half and the full set:

- score parameters (smoothing length, sigma, lookahead) by the highest LaAP≈ (corevad.latency.laap_approx),
  which charges each configuration its lookahead as detection latency, ties -> higher AUC (tune_scores);
- alert parameters by the alert rule (choose_alerts): false alerts per hour of normal video within a budget
  (else the fewest), then the most anomalous videos detected, then the lowest median delay;
- for text-anchored context (issue 12): the context (query, window, tau, mix) by frame AUC, then the
  smoothing for it by LaAP≈ (tune_context, tune_smoothing).

tools/tune_causal.py and tools/tune_text.py are the command lines around this module. The grids are the
option sets those tools have always searched; changing one changes the published figures.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .alerts import AlertParams, AlertTracker
from .benchmarks import VideoGT, load_benchmark, load_probabilities, load_responses, match_responses
from .errors import DataError
from .evaluate import scored_labels
from .latency import delay_stats, detection_delay, false_alerts_per_hour, laap_approx
from .metrics import frame_ap, frame_auc
from .params import CausalParams, OfflineParams
from .pipeline import score_causal, score_offline
from .prompt import parse_answer
from .refine import causal_smooth_convolved
from .splits import split_videos

SEGMENT_LEN = 30
FPS = 30.0

# -- option sets of tools/tune_causal.py (labels or label probabilities, no text context)
SMOOTH_LENGTHS = (1, 3, 5, 7, 9, 12, 15, 20, 30)
SMOOTH_SIGMAS = (2.0, 5.0, 10.0)
SMOOTH_LOOKAHEADS = (0, 1, 2)
# 0.999: "every tap of the smoothing window anomalous" (text-only scores reach 1 only up to rounding).
OPEN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.999)
CLOSE_GAPS = (0.0, 0.3)  # close_threshold = open_threshold - gap
CLOSE_AFTER_S = (0.0, 3.0, 10.0, 30.0)
COOLDOWN_S = (0.0, 10.0, 30.0, 60.0, 120.0)

# -- option sets of tools/tune_text.py (text-anchored context)
TEXT_WINDOWS = (30, 60, 120, 240)
TEXT_TAUS = (0.02, 0.05, 0.1)
# 0.25 was the lowest value of the first grid and the one chosen: the grid reaches below it (mix 0 = labels).
TEXT_MIXES = (0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0)
TEXT_QUERIES = ("answer", "description")
# Context scores are softer than labels: a finer grid near the top than OPEN_THRESHOLDS.
TEXT_OPEN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.999)
TEXT_SMOOTH_LENGTHS = (4, 8, 12, 16, 24, 32)
TEXT_SMOOTH_SIGMAS = (1.0, 2.0, 3.0, 5.0)

# The threshold search (choose_alerts_fine) never opens below this score: lower is not an alert.
LOWEST_SEARCHED_THRESHOLD = 0.3


@dataclass
class TuneVideo:
    """One benchmark video as the protocol sees it: ground truth, what each segment scores (the label, or
    P(Anomalous) where known), the answers' texts, and their sentence embeddings once embed() has run."""

    gt: VideoGT
    labels: np.ndarray
    answers: list[str] = field(default_factory=list)  # the verdict's one-line text ("Anomalous scenes. ...")
    descriptions: list[str] = field(default_factory=list)
    answer_emb: np.ndarray | None = None
    description_emb: np.ndarray | None = None


def load_videos(data: Path, responses: Path | None = None, probabilities: Path | None = None) -> list[TuneVideo]:
    """UCF-Crime's test videos with their parsed answers and what each segment scores: the label, or
    P(Anomalous) from a probabilities file (corevad generate's sidecar) where it has one.

    data is the benchmark folder (../shared/data); responses defaults to the authors' recorded answers.
    """
    videos = load_benchmark("ucf-crime", data / "ucf_crime" / "test_annotations.tsv")
    answers = load_responses(responses or data / "ucf_crime" / "VLM_responses_LRC_ucf.json")
    probs = load_probabilities(probabilities) if probabilities else None
    pairs, _ = match_responses(videos, answers, SEGMENT_LEN)
    out = []
    for v, ans in pairs:
        if probs is not None and v.name not in probs:
            raise DataError(f"video {v.name!r} is missing from the probabilities file {probabilities}")
        verdicts = [parse_answer(a) for a in ans]
        values = scored_labels(v.name, verdicts, None if probs is None else probs[v.name])
        out.append(TuneVideo(v, values, [x.text for x in verdicts], [x.description for x in verdicts]))
    return out


def halves(videos: Sequence[TuneVideo]) -> dict[str, list[TuneVideo]]:
    """The fixed split (corevad.splits) of loaded videos: "tune", "test", and "all" in load order."""
    names = {h: {g.name for g in split_videos([v.gt for v in videos], h)} for h in ("tune", "test")}
    return {"tune": [v for v in videos if v.gt.name in names["tune"]],
            "test": [v for v in videos if v.gt.name in names["test"]], "all": list(videos)}


def frames(seg_scores: np.ndarray, n: int) -> np.ndarray:
    """Segment scores repeated over their frames, cut to the video's n frames."""
    return np.repeat(seg_scores, SEGMENT_LEN)[:n]


def score_metrics(videos: Sequence[TuneVideo], seg_scores: Sequence[np.ndarray], delay: int) -> dict[str, float]:
    """Frame AUC, AP and LaAP≈ of segment scores that are final `delay` segments late."""
    fs = [frames(s, v.gt.frames) for v, s in zip(videos, seg_scores, strict=True)]
    gt = np.concatenate([v.gt.gt for v in videos])
    s = np.concatenate(fs)
    return {"auc": frame_auc(gt, s), "ap": frame_ap(gt, s),
            "laap": laap_approx(fs, [v.gt.spans for v in videos], latency_frames=delay * SEGMENT_LEN)}


def alert_intervals(seg_scores: np.ndarray, n_frames: int, params: AlertParams) -> list[tuple[float, float]]:
    """The alert intervals corevad.alerts.AlertTracker opens on one video, in video seconds.

    Fed as the runtime feeds it: segment i = [i, i + 1) s of stream, clock = the segment's end.
    """
    tracker = AlertTracker("tune", params)
    out = []
    for i, score in enumerate(seg_scores):
        end = min((i + 1) * SEGMENT_LEN, n_frames) / FPS
        for ev in tracker.update(index=i, start=i * SEGMENT_LEN / FPS, end=end, score=float(score)):
            if ev.type == "end" and ev.after.end_time is not None:
                out.append((ev.after.start_time, ev.after.end_time))
    for ev in tracker.close():
        if ev.after.end_time is not None:
            out.append((ev.after.start_time, ev.after.end_time))
    return out


def alert_metrics(videos: Sequence[TuneVideo], seg_scores: Sequence[np.ndarray], params: AlertParams,
                  delay: int) -> dict[str, float]:
    """Detections, delays and false alerts per hour of normal video of one alert setting."""
    delays: list[float | None] = []
    normal = []
    for v, s in zip(videos, seg_scores, strict=True):
        alerts = alert_intervals(s, v.gt.frames, params)
        if v.gt.is_anomalous:
            # published once the opening segment's score is final: (lookahead + 1) segments after its start
            delays.append(detection_delay(v.gt.spans, alerts, FPS, latency_s=(delay + 1) * SEGMENT_LEN / FPS))
        else:
            normal.append((v.gt.frames, v.gt.spans, alerts))
    st = delay_stats(delays)
    fa = false_alerts_per_hour(normal, FPS)
    return {"detected": st.detected, "anomalous_videos": st.videos, "detection_rate": st.detection_rate,
            # detections by an alert published before the GT start (delay 0): the VLM flagged the scene early
            "alerted_before_onset": sum(1 for d in delays if d == 0.0),
            "median_delay_s": st.median_s, "p90_delay_s": st.p90_s, "false_alerts": fa.false_alerts,
            "normal_hours": fa.hours, "false_alerts_per_hour": fa.per_hour}


def alert_rule(row: dict[str, Any]) -> tuple[float, float, float]:
    """The alert rule's order (larger is better): most detected, lowest median delay, fewest false alerts."""
    return (row["detected"], -_nan_big(row["median_delay_s"]), -row["false_alerts_per_hour"])


def alert_dict(ap: AlertParams) -> dict[str, float]:
    """The four alert parameters the protocol chooses, as written to a replay config."""
    return {"open_threshold": ap.open_threshold, "close_threshold": ap.close_threshold,
            "close_after_s": ap.close_after_s, "cooldown_s": ap.cooldown_s}


def _within_budget(rows: list[dict[str, Any]], budget: float) -> list[dict[str, Any]]:
    """Rows that keep the false-alert budget; none does: the row with the fewest."""
    return [r for r in rows if r["false_alerts_per_hour"] <= budget] or \
        [min(rows, key=lambda r: r["false_alerts_per_hour"])]


def choose_alerts(videos: Sequence[TuneVideo], seg: Sequence[np.ndarray], delay: int, fa_budget: float,
                  open_thresholds: Sequence[float] = OPEN_THRESHOLDS
                  ) -> tuple[AlertParams, list[dict[str, Any]], dict[str, Any]]:
    """The alert rule on given scores over the grid: <= fa_budget false alerts/h (else the fewest), then the
    most detected anomalous videos, then the lowest median delay. Returns the choice, every grid row and
    the chosen row."""
    rows = []
    for thr, gap, after, cool in itertools.product(open_thresholds, CLOSE_GAPS, CLOSE_AFTER_S, COOLDOWN_S):
        ap = AlertParams(open_threshold=thr, close_threshold=round(thr - gap, 3),
                         close_after_s=after, cooldown_s=cool)
        rows.append({**alert_dict(ap), **alert_metrics(videos, seg, ap, delay)})
    best = max(_within_budget(rows, fa_budget), key=alert_rule)
    return AlertParams(open_threshold=best["open_threshold"], close_threshold=best["close_threshold"],
                       close_after_s=best["close_after_s"], cooldown_s=best["cooldown_s"]), rows, best


def choose_alerts_fine(videos: Sequence[TuneVideo], seg: Sequence[np.ndarray], delay: int, budget: float
                       ) -> tuple[AlertParams, dict[str, Any]]:
    """choose_alerts with the open threshold searched over the scores themselves (--search-thresholds):
    for each hysteresis setting of the grid, the lowest score value (>= 0.3, 4 decimals) that keeps the
    budget (false alerts fall as the threshold rises; binary search). A fixed grid misses the operating
    point of continuous scores (label probabilities, refined scores). None within budget: the fewest.
    Returns the choice and its row (the row's "params" is the choice)."""
    values = np.unique(np.round(np.concatenate(seg), 4))
    values = values[values >= LOWEST_SEARCHED_THRESHOLD]
    if values.size == 0:
        raise ValueError(f"no score reaches {LOWEST_SEARCHED_THRESHOLD}: there is no threshold to search")

    def run(thr: float, gap: float, after: float, cool: float) -> dict[str, Any]:
        ap = AlertParams(open_threshold=float(thr), close_threshold=round(max(0.0, float(thr) - gap), 4),
                         close_after_s=after, cooldown_s=cool)
        return {"params": ap, **alert_metrics(videos, seg, ap, delay)}

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
    best = max(_within_budget(rows, budget), key=alert_rule)
    return best["params"], best


def _nan_big(x: float) -> float:
    return 1e9 if x != x else x


# ------------------------------------------------------------------ the causal protocol (labels only)


def smoothed(videos: Sequence[TuneVideo], params: CausalParams) -> list[np.ndarray]:
    """Each video's causally smoothed scores (text-only: no features, no text context), by convolution."""
    return [causal_smooth_convolved(v.labels, params.smooth_length, params.smooth_sigma, params.smooth_lookahead)
            for v in videos]


def tune_scores(tune: Sequence[TuneVideo]) -> tuple[CausalParams, list[dict[str, Any]]]:
    """The smoothing by tune-half LaAP≈ (lookahead charged as latency), ties -> AUC; and every grid row."""
    rows = []
    for length, sigma, la in itertools.product(SMOOTH_LENGTHS, SMOOTH_SIGMAS, SMOOTH_LOOKAHEADS):
        seg = [causal_smooth_convolved(v.labels, length, sigma, la) for v in tune]
        rows.append({"smooth_length": length, "smooth_sigma": sigma, "smooth_lookahead": la,
                     **score_metrics(tune, seg, la)})
    best = max(rows, key=lambda r: (round(r["laap"], 4), round(r["auc"], 4)))
    params = CausalParams(smooth_length=int(best["smooth_length"]), smooth_sigma=float(best["smooth_sigma"]),
                          smooth_lookahead=int(best["smooth_lookahead"]))
    return params, rows


def smoother_disagreement(videos: Sequence[TuneVideo], params: CausalParams) -> str | None:
    """The first video whose convolved scores differ from the method core's score_causal, else None.

    The grid is searched with the convolution (fast); if it disagreed with the core, the protocol would
    choose on numbers the monitor never computes.
    """
    for v, fast in zip(videos, smoothed(videos, params), strict=True):
        ref = score_causal(v.labels, v.gt.frames, params).segment_scores
        if not np.allclose(ref, fast, atol=1e-9):
            return v.gt.name
    return None


def tune_alerts(tune: Sequence[TuneVideo], params: CausalParams, fa_budget: float, *, search: bool = False
                ) -> tuple[AlertParams, list[dict[str, Any]]]:
    """The alert parameters for the chosen smoothing on the tune half: the grid, or (search) the threshold
    searched over the scores. Returns the choice and the rows (search: the chosen row only)."""
    seg = smoothed(tune, params)
    if search:
        alerts, best = choose_alerts_fine(tune, seg, params.delay, fa_budget)
        return alerts, [{k: v for k, v in best.items() if k != "params"}]
    alerts, rows, _ = choose_alerts(tune, seg, params.delay, fa_budget)
    return alerts, rows


def causal_report(videos: Sequence[TuneVideo], params: CausalParams, alerts: AlertParams) -> dict[str, Any]:
    """Online (method core's score_causal) and offline (paper mode) figures on one set of videos."""
    online = [score_causal(v.labels, v.gt.frames, params).segment_scores for v in videos]
    off = [score_offline(v.labels, v.gt.frames, OfflineParams()).frame_scores for v in videos]
    gt = np.concatenate([v.gt.gt for v in videos])
    offline = {"auc": frame_auc(gt, np.concatenate(off)), "ap": frame_ap(gt, np.concatenate(off)),
               "laap": laap_approx(off, [v.gt.spans for v in videos])}
    return {"videos": len(videos), "online": {**score_metrics(videos, online, params.delay),
                                              **alert_metrics(videos, online, alerts, params.delay)},
            "offline": offline}


# --------------------------------------------------------------------------- text-anchored context


def embed(videos: Sequence[TuneVideo], model: str) -> dict[str, float]:
    """Fill every video's embeddings through the disk-cached sentence encoder; return timings."""
    from .models.text import load_text_encoder

    t0 = time.perf_counter()
    enc = load_text_encoder(model, disk_cache=True)
    t1 = time.perf_counter()
    for v in videos:
        v.answer_emb = enc.encode_texts(v.answers)
        v.description_emb = enc.encode_texts(v.descriptions)
    t2 = time.perf_counter()
    enc.save()
    return {"load_s": t1 - t0, "embed_s": t2 - t1, "texts_embedded": enc.misses, "cache_hits": enc.hits}


def context_scores(videos: Sequence[TuneVideo], p: CausalParams, *, text: bool, query: str = "answer"
                   ) -> list[np.ndarray]:
    """Each video's score_causal segment scores; text: with text-anchored context, the query being each
    segment's whole answer or its description (embed() must have run)."""
    if query not in TEXT_QUERIES:
        raise ValueError(f"query must be one of {TEXT_QUERIES}, got {query!r}")
    out = []
    for v in videos:
        if not text:
            out.append(score_causal(v.labels, v.gt.frames, p).segment_scores)
            continue
        if v.answer_emb is None or v.description_emb is None:
            raise ValueError(f"video {v.gt.name!r} has no text embeddings: run embed() first")
        q = v.answer_emb if query == "answer" else v.description_emb
        out.append(score_causal(v.labels, v.gt.frames, p, answer_text_emb=q,
                                description_text_emb=v.description_emb).segment_scores)
    return out


def tune_context(tune: Sequence[TuneVideo], base: CausalParams) -> tuple[CausalParams, str, list[dict[str, Any]]]:
    """The context (query, window, tau, mix) by tune-half frame AUC (ties -> AP), with base's smoothing."""
    rows: list[dict[str, Any]] = []
    for query, window, tau, mix in itertools.product(TEXT_QUERIES, TEXT_WINDOWS, TEXT_TAUS, TEXT_MIXES):
        p = replace(base, text_window=window, text_tau=tau, text_mix=mix)
        m = score_metrics(tune, context_scores(tune, p, text=True, query=query), p.delay)
        rows.append({"query": query, "text_window": window, "text_tau": tau, "text_mix": mix, **m})
    best = max(rows, key=lambda r: (round(r["auc"], 4), round(r["ap"], 4)))
    return (replace(base, text_window=int(best["text_window"]), text_tau=float(best["text_tau"]),
                    text_mix=float(best["text_mix"])), str(best["query"]), rows)


def tune_smoothing(tune: Sequence[TuneVideo], p: CausalParams, query: str
                   ) -> tuple[CausalParams, list[dict[str, Any]]]:
    """The causal smoothing for the chosen context by tune-half LaAP≈ (then AUC), tune_scores' criterion for
    the smoothing: it weighs how soon a span is detected, which AUC ignores."""
    rows = []
    for length, sigma in itertools.product(TEXT_SMOOTH_LENGTHS, TEXT_SMOOTH_SIGMAS):
        q = replace(p, smooth_length=length, smooth_sigma=sigma)
        rows.append({"smooth_length": length, "smooth_sigma": sigma,
                     **score_metrics(tune, context_scores(tune, q, text=True, query=query), q.delay)})
    best = max(rows, key=lambda r: (round(r["laap"], 4), round(r["auc"], 4)))
    return replace(p, smooth_length=int(best["smooth_length"]), smooth_sigma=float(best["smooth_sigma"])), rows


def context_report(videos: Sequence[TuneVideo], p: CausalParams, ap: AlertParams, *, text: bool, query: str
                   ) -> dict[str, Any]:
    """Score and alert figures of one variant on one set of videos."""
    seg = context_scores(videos, p, text=text, query=query)
    return {**score_metrics(videos, seg, p.delay), **alert_metrics(videos, seg, ap, p.delay)}


# ------------------------------------------------------------------------------------ replay configs


def causal_config_text(params: CausalParams, alerts: AlertParams, report: dict[str, dict[str, Any]],
                       fa_budget: float) -> str:
    """The replay config (YAML with a comment header of the figures) of the causal protocol's choice;
    report maps "tune", "test", "all" to causal_report()."""
    tune, test, full = (report[k]["online"] for k in ("tune", "test", "all"))
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
        "alerts": alert_dict(alerts),
    }
    return "\n".join(head) + "\n" + _yaml(body)


def text_config_text(p: CausalParams, ap: AlertParams, *, query: str, model: str, fa_budget: float,
                     report: dict[str, dict[str, Any]]) -> str:
    """The replay config of the text-context protocol's choice; report maps "tune", "test", "all" to
    context_report() of the chosen variant."""
    head = ["# Online parameters with text-anchored context refinement for replaying UCF-Crime, chosen by",
            f"# tools/tune_text.py on the tune half (query: the {query}; encoder {model};",
            f"# alert thresholds for <= {fa_budget:g} false alerts/hour of normal video on the tune half).",
            "# Nothing here was chosen on the test half."]
    head += [f"# {h:5s}: AUC {100 * report[h]['auc']:.2f} AP {100 * report[h]['ap']:.2f} FA/h "
             f"{report[h]['false_alerts_per_hour']:.2f} detected {report[h]['detected']}/"
             f"{report[h]['anomalous_videos']}"
             for h in ("tune", "test", "all")]
    body = {"dataset": "ucf-crime",
            "refinement": {"smooth_length": p.smooth_length, "smooth_sigma": p.smooth_sigma,
                           "smooth_lookahead": p.smooth_lookahead, "lrc_lookahead": p.lrc_lookahead,
                           "text_context": True, "text_window": p.text_window, "text_tau": p.text_tau,
                           "text_mix": p.text_mix, "start_prior": p.start_prior},
            "alerts": alert_dict(ap)}
    return "\n".join(head) + "\n" + _yaml(body)


def _yaml(body: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(body, sort_keys=False))
