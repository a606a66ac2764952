"""The paper's evaluation: score every benchmark video from its answers and compute frame-level metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .benchmarks import VideoGT, match_responses
from .cleaning import lrc_choice, similarity
from .errors import DataError, ResponseCountError
from .features import load_segment_features
from .metrics import ClassMetric, frame_ap, frame_auc, per_class_metrics
from .params import CausalParams, OfflineParams
from .pipeline import VideoScores, score_causal, score_offline
from .prompt import parse_answer
from .types import Verdict

Mode = Literal["offline", "causal"]
TextEncoder = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class EvalResult:
    mode: Mode
    auc: float
    ap: float
    per_class: list[ClassMetric]
    videos: int
    frames: int
    anomalous_frames: int
    segments: int
    unparsed: int
    used_features: bool
    skipped: list[ResponseCountError] = field(default_factory=list)
    probability_segments: int = 0  # segments scored by P(Anomalous) (--probabilities) instead of the 0/1 label
    scores: dict[str, VideoScores] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "auc": self.auc, "ap": self.ap, "videos": self.videos, "frames": self.frames,
            "anomalous_frames": self.anomalous_frames, "segments": self.segments, "unparsed": self.unparsed,
            "used_features": self.used_features, "probability_segments": self.probability_segments,
            "per_class": [{"class": c.cls, "auc": c.auc, "videos": c.videos} for c in self.per_class],
            "skipped": [{"video": e.video, "expected": e.expected, "got": e.got} for e in self.skipped],
        }


def refinement_text(v: Verdict) -> str:
    """What refinement embeds: the description, or the whole answer when there is none (as the authors)."""
    return v.description or v.text


def scored_labels(video: str, verdicts: Sequence[Verdict],
                  probabilities: Sequence[float | None] | None = None) -> np.ndarray:
    """What a segment scores: its P(Anomalous) where known, else its 0/1 label."""
    labels = np.array([v.label for v in verdicts], dtype=np.float64)
    if probabilities is None:
        return labels
    if len(probabilities) != len(verdicts):
        raise DataError(f"video {video!r}: {len(probabilities)} probabilities for {len(verdicts)} answers")
    return np.array([lab if p is None else p for lab, p in zip(labels, probabilities, strict=True)])


def score_video(
    video: VideoGT,
    answers: list[str],
    mode: Mode,
    offline: OfflineParams,
    causal: CausalParams,
    *,
    visual: np.ndarray | None = None,
    text_encoder: TextEncoder | None = None,
    apply_lrc: bool = False,
    sentence_encoder: TextEncoder | None = None,
    probabilities: Sequence[float | None] | None = None,
) -> tuple[VideoScores, int]:
    """Score one video; returns its scores and how many answers were unparsed.

    sentence_encoder (causal mode, without CLIP features): text-anchored context refinement.
    probabilities: P(Anomalous) per segment (None where unknown): scored instead of the 0/1 label."""
    verdicts = [parse_answer(a) for a in answers]
    unparsed = sum(not v.parsed for v in verdicts)
    labels = scored_labels(video.name, verdicts, probabilities)
    if visual is None or text_encoder is None:
        visual = resp_emb = desc_emb = None  # text-only
    else:
        desc_emb = text_encoder([refinement_text(v) for v in verdicts])
        resp_emb = text_encoder([" ".join(a.split()) for a in answers]) if apply_lrc else None
    if mode == "offline":
        if visual is not None and resp_emb is not None and desc_emb is not None:
            lb = la = offline.lrc_window
            choice = lrc_choice(similarity(visual, resp_emb, offline.renormalise_visual), lb, la)
            labels, desc_emb = labels[choice], desc_emb[choice]
        scores = score_offline(labels, video.frames, offline, visual=visual, description_emb=desc_emb)
    elif sentence_encoder is not None and visual is None:
        desc_t = sentence_encoder([v.description for v in verdicts])  # query = key = the description
        scores = score_causal(labels, video.frames, causal, answer_text_emb=desc_t, description_text_emb=desc_t)
    else:
        scores = score_causal(labels, video.frames, causal, visual=visual, response_emb=resp_emb,
                              description_emb=desc_emb)
    return scores, unparsed


def evaluate(
    videos: list[VideoGT],
    responses: Mapping[str, list[str]],
    *,
    mode: Mode = "offline",
    offline: OfflineParams = OfflineParams(),
    causal: CausalParams = CausalParams(),
    features_dir: str | Path | None = None,
    text_encoder: TextEncoder | None = None,
    apply_lrc: bool = False,
    sentence_encoder: TextEncoder | None = None,
    probabilities: Mapping[str, Sequence[float | None]] | None = None,
    skip_bad: bool = False,
    keep_scores: bool = False,
    on_video: Callable[[VideoGT], None] | None = None,
) -> EvalResult:
    """Evaluate a benchmark. Without features_dir (or a text encoder) the protocol is text-only.
    probabilities (video -> P(Anomalous) per segment, None where unknown) score instead of the labels; a
    scored video missing from it is an error."""
    seg_len = offline.segment_len if mode == "offline" else causal.segment_len
    pairs, skipped = match_responses(videos, responses, seg_len, skip_bad)
    use_features = features_dir is not None and text_encoder is not None
    kept, frame_scores, per_video = [], [], {}
    segments = unparsed = with_p = 0
    for video, answers in pairs:
        probs = None
        if probabilities is not None:
            probs = probabilities.get(video.name)
            if probs is None:
                raise DataError(f"video {video.name!r} is missing from the probabilities file")
            with_p += sum(p is not None for p in probs)
        visual = (load_segment_features(features_dir, video.name, video.segments(seg_len), seg_len)
                  if features_dir and use_features else None)
        scores, bad = score_video(video, answers, mode, offline, causal, visual=visual,
                                  text_encoder=text_encoder, apply_lrc=apply_lrc,
                                  sentence_encoder=sentence_encoder if mode == "causal" else None,
                                  probabilities=probs)
        kept.append(video)
        frame_scores.append(scores.frame_scores)
        if keep_scores:
            per_video[video.name] = scores
        segments += len(answers)
        unparsed += bad
        if on_video is not None:
            on_video(video)
    if not kept:
        raise ResponseCountError("(all)", len(videos), 0)
    gt = np.concatenate([v.gt for v in kept])
    s = np.concatenate(frame_scores)
    return EvalResult(
        mode=mode, auc=frame_auc(gt, s), ap=frame_ap(gt, s), per_class=per_class_metrics(kept, frame_scores),
        videos=len(kept), frames=int(gt.size), anomalous_frames=int(gt.sum()), segments=segments,
        unparsed=unparsed, used_features=use_features, skipped=skipped, scores=per_video,
        probability_segments=with_p,
    )
