"""`lrc`: Local Response Cleaning of recorded answers against the videos' CLIP features (the authors' LRC.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..benchmarks import probabilities_beside
from ..errors import DataError
from ..features import load_segment_features
from ..files import atomic_write_json
from .report import NoProgress, PipelineProgress, RunReport, error_text, one_line, read_state


def lrc_responses(
    responses: dict[str, list[str]],
    features_dir: str | Path,
    out_path: str | Path,
    encode_texts: Callable[[list[str]], np.ndarray],
    *,
    window: int = 1,
    segment_len: int = 30,
    renormalise_visual: bool = False,
    probabilities: dict[str, list[float | None]] | None = None,
    progress: PipelineProgress | None = None,
) -> RunReport:
    """Local Response Cleaning per video (the authors' LRC.py): each segment takes the answer in
    [i - window, i + window] whose CLIP text embedding best matches the segment's mean frame embedding.
    probabilities (generate's sidecar): the chosen answer's P(Anomalous) goes with it, to
    `<out stem>.p_anomalous.json`. Progress counts videos only (no units).
    """
    from ..cleaning import clean_responses, lrc_choice, similarity

    progress = progress or NoProgress()
    report = RunReport()
    out = Path(out_path)
    cleaned: dict[str, list[str]] = read_state(out, {})
    probs_path = probabilities_beside(out)
    cleaned_p: dict[str, list[float | None]] = read_state(probs_path, {}) if probabilities is not None else {}
    progress.begin(len(responses))
    for video, answers in responses.items():
        if video in cleaned:
            report.skipped.append(video)
            progress.video_done()
            continue
        try:
            visual = load_segment_features(features_dir, video, len(answers), segment_len)
            texts = [one_line(a) if a else "" for a in answers]
            emb = encode_texts(texts)
            choice = lrc_choice(similarity(visual, emb, renormalise_visual), window, window)
            if probabilities is not None:
                p = probabilities.get(video)
                if p is None or len(p) != len(answers):
                    raise DataError(f"{video}: {'no' if p is None else len(p)} probabilities for "
                                    f"{len(answers)} answers in the probabilities file")
                cleaned_p[video] = [p[int(j)] for j in choice]
                atomic_write_json(probs_path, cleaned_p)  # before the answers: a video is done once there
            cleaned[video] = clean_responses(texts, choice)
            atomic_write_json(out, cleaned)
            report.done.append(video)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            report.failed[video] = error_text(exc)
            progress.failed(video, error_text(exc))
        progress.video_done()
    if not out.exists():
        atomic_write_json(out, cleaned)
    return report
