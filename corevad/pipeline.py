"""Per-video scoring: the paper's offline protocol and the causal (streaming) protocol, batch form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cleaning import lrc_choice, similarity
from .params import CausalParams, OfflineParams
from .refine import (
    causal_smooth,
    causal_softmax_refine,
    gaussian_smooth,
    position_weights,
    softmax_refine,
    softmax_refine_paper,
    text_context_refine,
)
from .segments import expand_to_frames, segment_count


@dataclass(frozen=True, slots=True)
class VideoScores:
    """Scores of one video: per segment (after smoothing) and per frame (what the metrics see)."""

    segment_scores: np.ndarray
    frame_scores: np.ndarray
    refined: np.ndarray
    labels: np.ndarray
    used_features: bool


def _check_lengths(labels: np.ndarray, n_frames: int, segment_len: int, **arrays: np.ndarray | None) -> None:
    n = segment_count(n_frames, segment_len)
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n_frames} frames ({n} segments of {segment_len})")
    for name, arr in arrays.items():
        if arr is not None and arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n} segments")


def score_offline(
    labels: np.ndarray,
    n_frames: int,
    params: OfflineParams = OfflineParams(),
    *,
    visual: np.ndarray | None = None,
    description_emb: np.ndarray | None = None,
) -> VideoScores:
    """The paper's protocol on already-cleaned responses.

    With CLIP features (visual: per-segment mean image embedding; description_emb: unit text embedding
    of each response's description) the labels are softmax-refined first; without them the pipeline is
    text-only: labels -> Gaussian smoothing -> frame expansion -> position weighting.
    """
    lab = np.asarray(labels, dtype=np.float64)
    _check_lengths(lab, n_frames, params.segment_len, visual=visual, description_emb=description_emb)
    used = visual is not None and description_emb is not None
    if visual is not None and description_emb is not None:
        sims = similarity(visual, description_emb, params.renormalise_visual)
        refine = softmax_refine_paper if params.paper_precision else softmax_refine
        refined = np.asarray(refine(sims, lab, params.tau), dtype=np.float64)
    else:
        refined = lab
    if params.paper_precision:
        refined = refined.astype(np.float16)
    smoothed = gaussian_smooth(refined, params.kernel_size, params.sigma, params.centred_kernel)
    frames = expand_to_frames(smoothed, n_frames, params.segment_len)
    if params.paper_precision:
        frames = frames.astype(np.float16)
    if params.position_weighting:
        frames = frames * position_weights(n_frames)
    return VideoScores(smoothed, np.asarray(frames, dtype=np.float64), refined.astype(np.float64), lab, used)


def score_causal(
    labels: np.ndarray,
    n_frames: int,
    params: CausalParams = CausalParams(),
    *,
    visual: np.ndarray | None = None,
    response_emb: np.ndarray | None = None,
    description_emb: np.ndarray | None = None,
    answer_text_emb: np.ndarray | None = None,
    description_text_emb: np.ndarray | None = None,
) -> VideoScores:
    """The streaming protocol in batch form; CausalScorer computes the same scores step by step.

    response_emb (embedding of each whole raw response) enables causal LRC with
    params.lrc_lookback / lrc_lookahead; leave it None for responses that are already cleaned.
    description_emb + visual enable sliding-window softmax refinement (CLIP). answer_text_emb +
    description_text_emb (a sentence encoder's, no CLIP) enable text-anchored context refinement
    instead. No position weighting.
    """
    lab = np.asarray(labels, dtype=np.float64)
    _check_lengths(lab, n_frames, params.segment_len, visual=visual, response_emb=response_emb,
                   description_emb=description_emb, answer_text_emb=answer_text_emb,
                   description_text_emb=description_text_emb)
    text = answer_text_emb is not None and description_text_emb is not None
    if text and visual is not None:
        raise ValueError("give CLIP features (visual) or text embeddings, not both")
    desc = description_emb
    if visual is not None and response_emb is not None:
        choice = lrc_choice(similarity(visual, response_emb, params.renormalise_visual),
                            params.lrc_lookback, params.lrc_lookahead)
        lab = lab[choice]
        desc = desc[choice] if desc is not None else None
    used = visual is not None and desc is not None
    if visual is not None and desc is not None:
        sims = similarity(visual, desc, params.renormalise_visual)
        refined = causal_softmax_refine(sims, lab, params.tau, params.refine_window)
    elif answer_text_emb is not None and description_text_emb is not None:
        refined, _ = text_context_refine(lab, answer_text_emb, description_text_emb, tau=params.text_tau,
                                         window=params.text_window, mix=params.text_mix)
    else:
        refined = lab
    smoothed = causal_smooth(refined, params.smooth_length, params.smooth_sigma, params.smooth_lookahead,
                             start_prior=params.start_prior)
    frames = expand_to_frames(smoothed, n_frames, params.segment_len)
    return VideoScores(smoothed, frames.astype(np.float64), refined, lab, used)
