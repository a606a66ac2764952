"""Sub-commands of `corevad` for the paper's offline pipeline (extract features, generate answers, LRC).

All three are resumable: finished work is kept in the output and skipped on the next run, every file
is written to a temporary name and moved into place (an interrupted write never leaves a torn file),
and a video that fails is reported and skipped while the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .benchmarks import probabilities_beside
from .defaults import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from .errors import CorevadError, DataError
from .features import feature_path, load_segment_features
from .files import MIB, read_text_checked, read_yaml_mapping

# ---------------------------------------------------------------------------------------------- io


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace onto path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def one_line(text: str) -> str:
    """Collapse whitespace, so every stored answer is a single line like the authors'."""
    return " ".join(text.split())


# ------------------------------------------------------------------------------------ video lists


@dataclass(frozen=True, slots=True)
class VideoJob:
    """A video to process: its key (responses/feature name), file, and the frame count the GT expects."""

    name: str
    path: Path | None
    expected_frames: int | None = None


def list_jobs(videos_dir: str | Path, dataset: str | None, annotations: str | Path | None) -> list[VideoJob]:
    """Videos to process: those the annotation lists (in its order), else every video in the folder.

    A listed video with no file is kept with path=None so it is reported, not silently dropped.
    """
    from .video import find_videos

    files = find_videos(videos_dir)
    if annotations is None:
        return [VideoJob(name, path) for name, path in files.items()]
    if dataset is None:
        raise ValueError("--annotations needs --dataset (ucf-crime or xd-violence)")
    from .benchmarks import load_benchmark

    by_clean = {name.replace("#", ""): path for name, path in files.items()}
    jobs = []
    for v in load_benchmark(dataset, annotations):
        jobs.append(VideoJob(v.name, files.get(v.name) or by_clean.get(v.name), v.frames))
    return jobs


# ------------------------------------------------------------------------------------- reporting


@dataclass
class RunReport:
    """What a command did: per-video outcomes collected for the final summary."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unparsed: int = 0

    def print(self, console: Any, what: str) -> None:
        from rich.table import Table

        for w in self.warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)
        if self.failed:
            t = Table(title=f"{what}: {len(self.failed)} video(s) failed (skipped; rerun to retry)")
            t.add_column("video")
            t.add_column("error")
            for name, err in self.failed.items():
                t.add_row(name, err)
            console.print(t)
        extra = f", {self.unparsed} unparsed answers" if self.unparsed else ""
        console.print(
            f"{what}: {len(self.done)} done, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed{extra}",
            highlight=False,
        )

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _progress(console: Any):  # -> rich.progress.Progress
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CorevadError) else f"{type(exc).__name__}: {exc}"


def _fit_length(seq: list[Any] | np.ndarray, n: int) -> Any:
    """Cut to n, or pad by repeating the last item (the decoder lost or gained a few frames)."""
    if len(seq) >= n:
        return seq[:n]
    if isinstance(seq, np.ndarray):
        return np.concatenate([seq, np.repeat(seq[-1:], n - len(seq), axis=0)], axis=0)
    return list(seq) + [seq[-1]] * (n - len(seq))


# ------------------------------------------------------------------------------- extract-features


def extract_features(
    jobs: list[VideoJob],
    out_dir: str | Path,
    encoder: Any,
    *,
    fix_frame_count: bool = False,
    overwrite: bool = False,
    console: Any = None,
    batch_frames: int = 64,
) -> RunReport:
    """Encode every frame of each video with CLIP; save `<video>_CLIP_features.npy` (frames x dim)."""
    from rich.console import Console

    from .video import frame_count_message, iter_frames

    console = console or Console(stderr=True)
    report = RunReport()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _progress(console) as progress:
        vids = progress.add_task("videos", total=len(jobs))
        frames_task = progress.add_task("frames", total=None)
        for job in jobs:
            target = feature_path(out, job.name)
            if target.is_file() and not overwrite and _valid_features(target, encoder.dim):
                report.skipped.append(job.name)
                progress.advance(vids)
                continue
            try:
                if job.path is None:
                    raise DataError(f"video {job.name!r} is listed but not in the video folder")
                progress.reset(frames_task, total=job.expected_frames, description=job.name[:40])
                chunks: list[np.ndarray] = []
                batch: list[np.ndarray] = []
                for frame in iter_frames(job.path):
                    batch.append(frame)
                    if len(batch) == batch_frames:
                        chunks.append(encoder.encode_images(np.stack(batch)))
                        progress.advance(frames_task, len(batch))
                        batch = []
                if batch:
                    chunks.append(encoder.encode_images(np.stack(batch)))
                    progress.advance(frames_task, len(batch))
                if not chunks:
                    raise DataError(f"{job.name}: no frames decoded")
                feats = np.concatenate(chunks).astype(np.float32)
                decoded = feats.shape[0]
                msg = frame_count_message(job.name, decoded, job.expected_frames)
                if msg:
                    if fix_frame_count and job.expected_frames:
                        feats = _fit_length(feats, job.expected_frames)
                        msg += f"; features {'padded' if decoded < job.expected_frames else 'cut'} to match"
                    report.warnings.append(msg)
                atomic_save_npy(target, feats)
                report.done.append(job.name)
            except Exception as exc:  # one bad video must not stop the run
                report.failed[job.name] = _error_text(exc)
                console.print(f"[red]failed:[/] {job.name}: {_error_text(exc)}", highlight=False)
            progress.advance(vids)
    return report


def _valid_features(path: Path, dim: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.ndim == 2 and arr.shape[1] == dim and arr.shape[0] > 0


# --------------------------------------------------------------------------------------- generate


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(read_text_checked(path, limit=512 * MIB, what="state file", allow_empty=True) or "null")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); move it away to start over") from exc


def generate_responses(
    jobs: list[VideoJob],
    out_path: str | Path,
    backend: Any,
    *,
    segment_len: int = 30,
    n_sampled: int = 8,
    batch_size: int = 8,
    fix_frame_count: bool = False,
    console: Any = None,
) -> RunReport:
    """Ask the VLM about every segment; write the authors' JSON (video -> one-line answer per segment).

    Completed videos live in out_path; the video in progress is checkpointed after every batch in
    `<out>.partial.json`, so a killed run resumes mid-video. Raw answers go to `<out stem>.raw.json`, and
    the label probability P(Anomalous) of each answer (null where the backend cannot tell) to
    `<out stem>.p_anomalous.json`, which `corevad eval --probabilities` scores instead of the 0/1 labels.
    """
    from rich.console import Console

    from .models.base import Clip
    from .models.base import answers as answers_of
    from .prompt import parse_answer
    from .segments import segment_count
    from .video import frame_count_message, iter_segments

    console = console or Console(stderr=True)
    report = RunReport()
    out = Path(out_path)
    raw_path = out.with_name(out.stem + ".raw.json")
    partial_path = out.with_name(out.name + ".partial.json")
    probs_path = probabilities_beside(out)
    results: dict[str, list[str]] = _read_json(out, {})
    raws: dict[str, list[str]] = _read_json(raw_path, {})
    partial: dict[str, Any] = _read_json(partial_path, {})
    probs: dict[str, list[float | None]] = _read_json(probs_path, {})

    with _progress(console) as progress:
        vids = progress.add_task("videos", total=len(jobs))
        seg_task = progress.add_task("segments", total=None)
        for job in jobs:
            if job.name in results:
                report.skipped.append(job.name)
                progress.advance(vids)
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
                progress.reset(seg_task, total=expected_segments, completed=len(answers),
                               description=job.name[:40])
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
                    progress.advance(seg_task, len(pending))
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
                        answers = _fit_length(answers, expected_segments)
                        raw_answers = _fit_length(raw_answers, expected_segments)
                        p_answers = _fit_length(p_answers, expected_segments)
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
            except Exception as exc:
                report.failed[job.name] = _error_text(exc)
                console.print(f"[red]failed:[/] {job.name}: {_error_text(exc)}", highlight=False)
            progress.advance(vids)
    if not out.exists():
        atomic_write_json(probs_path, probs)
        atomic_write_json(out, results)
    return report


# -------------------------------------------------------------------------------------------- lrc


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
    console: Any = None,
) -> RunReport:
    """Local Response Cleaning per video (the authors' LRC.py): each segment takes the answer in
    [i - window, i + window] whose CLIP text embedding best matches the segment's mean frame embedding.
    probabilities (generate's sidecar): the chosen answer's P(Anomalous) goes with it, to
    `<out stem>.p_anomalous.json`.
    """
    from rich.console import Console

    from .cleaning import clean_responses, lrc_choice, similarity

    console = console or Console(stderr=True)
    report = RunReport()
    out = Path(out_path)
    cleaned: dict[str, list[str]] = _read_json(out, {})
    probs_path = probabilities_beside(out)
    cleaned_p: dict[str, list[float | None]] = _read_json(probs_path, {}) if probabilities is not None else {}
    with _progress(console) as progress:
        task = progress.add_task("LRC", total=len(responses))
        for video, answers in responses.items():
            if video in cleaned:
                report.skipped.append(video)
                progress.advance(task)
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
            except Exception as exc:
                report.failed[video] = _error_text(exc)
                console.print(f"[red]failed:[/] {video}: {_error_text(exc)}", highlight=False)
            progress.advance(task)
    if not out.exists():
        atomic_write_json(out, cleaned)
    return report


# -------------------------------------------------------------------------------------------- CLI


def _none(value: str) -> str | None:
    return None if value.lower() in ("none", "random", "") else value


def _add_video_args(p: argparse.ArgumentParser) -> None:
    from .benchmarks import DATASETS

    p.add_argument("--videos", required=True, metavar="DIR", help="folder holding the video files")
    p.add_argument("--dataset", choices=DATASETS, help="benchmark whose annotation lists the videos")
    p.add_argument("--annotations", metavar="PATH",
                   help="annotation file (UCF: test_annotations.tsv, XD: xd_annotations.json); "
                        "default: every video in --videos")
    p.add_argument("--fix-frame-count", action="store_true",
                   help="cut/pad outputs to the annotation's frame count when the decoder disagrees")


def _add_clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL, help="open_clip model name ('tiny': random tiny CLIP)")
    p.add_argument("--clip-pretrained", default=DEFAULT_CLIP_PRETRAINED, type=_none,
                   help="open_clip pretrained tag or checkpoint file; 'none' = random weights")
    p.add_argument("--clip-batch-size", type=int, default=64, help="frames per CLIP forward pass")
    p.add_argument("--preprocess", choices=("openclip", "paper"), default="openclip",
                   help="openclip: model's resize+centre crop; paper: the authors' square 224 resize")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


def _clip_config(args: argparse.Namespace) -> Any:
    from .models import ClipConfig

    return ClipConfig(model=args.clip_model, pretrained=args.clip_pretrained, device=args.device,
                      batch_size=args.clip_batch_size, preprocess=args.preprocess)


def _cmd_extract(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .models import load_clip

    console = Console(stderr=True)
    jobs = list_jobs(args.videos, args.dataset, args.annotations)
    encoder = load_clip(_clip_config(args))
    report = extract_features(jobs, args.out, encoder, fix_frame_count=args.fix_frame_count,
                              overwrite=args.overwrite, console=console, batch_frames=args.clip_batch_size)
    report.print(console, "extract-features")
    return report.exit_code


def _vlm_config(args: argparse.Namespace) -> Any:
    from .models import VLMConfig

    data: dict[str, Any] = {}
    if args.vlm_config:
        loaded = read_yaml_mapping(args.vlm_config, what="VLM config")
        data = loaded.get("vlm", loaded)
    flags = {"backend": args.backend, "model": args.model, "device": args.device, "dtype": args.dtype,
             "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
             "prompt_path": args.prompt, "responses": args.replay}
    data.update({k: v for k, v in flags.items() if v is not None})
    openai = dict(data.get("openai") or {})
    for key, value in (("base_url", args.base_url), ("model", args.server_model),
                       ("api_key_env", args.api_key_env), ("concurrency", args.concurrency)):
        if value is not None:
            openai[key] = value
    if openai:
        data["openai"] = openai
    return VLMConfig.model_validate(data)


def _cmd_generate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .models import load_vlm

    console = Console(stderr=True)
    cfg = _vlm_config(args)
    jobs = list_jobs(args.videos, args.dataset, args.annotations)
    backend = load_vlm(cfg)
    try:
        report = generate_responses(jobs, args.out, backend, n_sampled=cfg.n_frames, batch_size=cfg.batch_size,
                                    fix_frame_count=args.fix_frame_count, console=console)
    finally:
        backend.close()
    report.print(console, "generate")
    return report.exit_code


def _cmd_lrc(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .benchmarks import load_probabilities, load_responses
    from .models import load_clip

    console = Console(stderr=True)
    responses = load_responses(args.responses)
    beside = probabilities_beside(args.responses)
    probabilities = load_probabilities(beside) if beside.is_file() else None
    encoder = load_clip(_clip_config(args))
    report = lrc_responses(responses, args.features, args.out, encoder.encode_texts, window=args.window,
                           probabilities=probabilities, console=console)
    report.print(console, "lrc")
    return report.exit_code


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    """Register the offline-pipeline sub-commands on the `corevad` parser."""
    p = subparsers.add_parser(
        "extract-features", help="CLIP embedding of every frame: <out>/<video>_CLIP_features.npy",
        description="Encode every frame of each video with CLIP (unit vectors, frames x dim), named like "
                    "the authors' release. Resumable: existing valid files are kept.")
    _add_video_args(p)
    _add_clip_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .npy files")
    p.add_argument("--overwrite", action="store_true", help="recompute files that already exist")
    p.set_defaults(func=_cmd_extract)

    p = subparsers.add_parser(
        "generate", help="VLM answer per 30-frame segment -> responses JSON (authors' format)",
        description="Ask the VLM about 8 frames sampled from every 30-frame segment and write "
                    "video -> list of one-line answers. Resumable mid-video.")
    _add_video_args(p)
    p.add_argument("--out", required=True, metavar="JSON", help="responses file to write (and resume)")
    p.add_argument("--vlm-config", metavar="YAML", help="VLM settings (VLMConfig fields, optionally under vlm:)")
    p.add_argument("--backend", choices=("transformers", "openai", "replay"))
    p.add_argument("--model", help="transformers: hub id or local folder ('tiny': random tiny InternVL)")
    p.add_argument("--device", help="auto, cpu or cuda[:N]")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int, help="segments per generate call / per request burst")
    p.add_argument("--prompt", help="prompt template with $Data (default the shipped corevad/data/prompt.txt)")
    p.add_argument("--base-url", help="openai: server URL including /v1")
    p.add_argument("--server-model", help="openai: model name the server expects")
    p.add_argument("--api-key-env", help="openai: environment variable holding the API key")
    p.add_argument("--concurrency", type=int, help="openai: requests in flight")
    p.add_argument("--replay", metavar="JSON", help="replay: recorded responses file")
    p.set_defaults(func=_cmd_generate)

    p = subparsers.add_parser(
        "lrc", help="Local Response Cleaning with CLIP features -> cleaned responses JSON",
        description="For each segment pick, among the answers of segments i-w..i+w, the one whose CLIP "
                    "text embedding best matches the segment's mean frame embedding (the paper's LRC).")
    p.add_argument("--responses", required=True, metavar="JSON", help="raw responses (from generate)")
    p.add_argument("--features", required=True, metavar="DIR", help="folder of <video>_CLIP_features.npy")
    p.add_argument("--out", required=True, metavar="JSON", help="cleaned responses file (resumable)")
    p.add_argument("--window", type=int, default=1, help="candidates i-w..i+w (paper: 1)")
    _add_clip_args(p)
    p.set_defaults(func=_cmd_lrc)
