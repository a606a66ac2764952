"""`generate`: the VLM's answer for every segment of each video, in the authors' responses format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..benchmarks import probabilities_beside
from ..errors import CorevadError, DataError
from ..files import atomic_write_json
from .jobs import VideoJob
from .report import NoProgress, PipelineProgress, RunReport, error_text, fit_length, one_line, read_state

if TYPE_CHECKING:  # corevad.models loads pydantic: only when a pipeline runs
    from ..models.base import VLMBackend


def generate_responses(
    jobs: list[VideoJob],
    out_path: str | Path,
    backend: VLMBackend,
    *,
    segment_len: int = 30,
    n_sampled: int = 8,
    batch_size: int = 8,
    fix_frame_count: bool = False,
    progress: PipelineProgress | None = None,
) -> RunReport:
    """Ask the VLM about every segment; write the authors' JSON (video -> one-line answer per segment).

    Completed videos live in out_path; the video in progress is checkpointed after every batch in
    `<out>.partial.json`, so a killed run resumes mid-video. Raw answers go to `<out stem>.raw.json`, and
    the label probability P(Anomalous) of each answer (null where the backend cannot tell) to
    `<out stem>.p_anomalous.json`, which `corevad eval --probabilities` scores instead of the 0/1 labels.
    Progress units are segments.
    """
    from ..models.base import Clip
    from ..models.base import answers as answers_of
    from ..prompt import parse_answer
    from ..segments import segment_count
    from ..video import frame_count_message, iter_segments

    progress = progress or NoProgress()
    report = RunReport()
    out = Path(out_path)
    raw_path = out.with_name(out.stem + ".raw.json")
    partial_path = out.with_name(out.name + ".partial.json")
    probs_path = probabilities_beside(out)
    results: dict[str, list[str]] = read_state(out, {})
    raws: dict[str, list[str]] = read_state(raw_path, {})
    partial: dict[str, Any] = read_state(partial_path, {})
    probs: dict[str, list[float | None]] = read_state(probs_path, {})

    progress.begin(len(jobs))
    for job in jobs:
        if job.name in results:
            report.skipped.append(job.name)
            progress.video_done()
            continue
        try:
            if job.path is None:
                raise DataError(f"video {job.name!r} is listed but not in the video folder")
            answers: list[str] = []
            raw_answers: list[str] = []
            p_answers: list[float | None] = []
            if partial.get("video") == job.name:
                answers, raw_answers = list(partial["answers"]), list(partial["raw"])
                p_answers = list(partial.get("p") or [None] * len(answers))
            expected_segments = (
                segment_count(job.expected_frames, segment_len) if job.expected_frames else None
            )
            progress.video(job.name, units=expected_segments, done=len(answers))
            pending: list[Clip] = []
            n_frames = 0

            def flush(pending: list[Clip] = pending, answers: list[str] = answers,
                      raw_answers: list[str] = raw_answers, p_answers: list[float | None] = p_answers,
                      name: str = job.name) -> None:
                if not pending:
                    return
                got = answers_of(backend, pending)
                if len(got) != len(pending):
                    raise CorevadError(f"backend returned {len(got)} answers for {len(pending)} segments")
                for answer in got:
                    verdict = parse_answer(answer.text)
                    raw_answers.append(answer.text)
                    answers.append(one_line(verdict.text))
                    p_answers.append(answer.p_anomalous)
                    report.unparsed += not verdict.parsed
                progress.advance_units(len(pending))
                pending.clear()
                atomic_write_json(partial_path, {"video": name, "answers": answers, "raw": raw_answers,
                                                 "p": p_answers})

            for segment, frames in iter_segments(job.path, segment_len, n_sampled):
                n_frames = segment.end
                if segment.index < len(answers):
                    continue  # answered before the interruption
                pending.append(Clip(job.name, segment.index, frames))
                if len(pending) >= batch_size:
                    flush()
            flush()
            if len(answers) != segment_count(n_frames, segment_len):
                raise DataError(
                    f"{job.name}: {len(answers)} answers for {segment_count(n_frames, segment_len)} "
                    "segments; the checkpoint does not match this video (delete the .partial.json)"
                )
            msg = frame_count_message(job.name, n_frames, job.expected_frames)
            if msg and expected_segments is not None and expected_segments != len(answers):
                if fix_frame_count:
                    answers = fit_length(answers, expected_segments)
                    raw_answers = fit_length(raw_answers, expected_segments)
                    p_answers = fit_length(p_answers, expected_segments)
                    msg += f"; answers fitted to {expected_segments} segments"
                else:
                    msg += f"; {len(answers)} answers instead of {expected_segments} (--fix-frame-count)"
            if msg:
                report.warnings.append(msg)
            results[job.name] = answers
            raws[job.name] = raw_answers
            probs[job.name] = p_answers
            # Probabilities, results, raw, then drop the checkpoint: a video is done once it is in the
            # results, which needs its probabilities already there; a crash in between only redoes work.
            atomic_write_json(probs_path, probs)
            atomic_write_json(out, results)
            atomic_write_json(raw_path, raws)
            partial_path.unlink(missing_ok=True)
            partial = {}
            report.done.append(job.name)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            report.failed[job.name] = error_text(exc)
            progress.failed(job.name, error_text(exc))
        progress.video_done()
    if not out.exists():
        atomic_write_json(probs_path, probs)
        atomic_write_json(out, results)
    return report
