"""`corevad extract-features | generate | lrc`: argparse and rich around corevad.pipelines.

The pipelines report progress through a protocol; RichProgress draws it as the two bars (videos, and
the frames or segments of the current video) these commands have always shown, and print_report the
summary table.
"""

from __future__ import annotations

import argparse
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..benchmarks import DATASETS, probabilities_beside
from ..defaults import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from ..files import read_yaml_mapping
from ..pipelines import RunReport, extract_features, generate_responses, list_jobs, lrc_responses

if TYPE_CHECKING:  # corevad.models loads pydantic: only when a command runs, so `--help` stays fast
    from ..models.config import ClipConfig, VLMConfig


class RichProgress:
    """A PipelineProgress drawn with rich on `console`: a bar of videos and, when `units` names them, one
    of the current video's units. Use as a context manager around the pipeline call."""

    def __init__(self, console: Console, *, videos: str = "videos", units: str | None = None) -> None:
        self._console = console
        self._videos_label, self._units_label = videos, units
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._videos: TaskID | None = None
        self._units: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def begin(self, videos: int) -> None:
        self._videos = self._progress.add_task(self._videos_label, total=videos)
        if self._units_label is not None:
            self._units = self._progress.add_task(self._units_label, total=None)

    def video(self, name: str, *, units: int | None, done: int = 0) -> None:
        if self._units is not None:
            self._progress.reset(self._units, total=units, completed=done, description=name[:40])

    def advance_units(self, n: int) -> None:
        if self._units is not None:
            self._progress.advance(self._units, n)

    def video_done(self) -> None:
        if self._videos is not None:
            self._progress.advance(self._videos)

    def failed(self, name: str, error: str) -> None:
        self._console.print(f"[red]failed:[/] {name}: {error}", highlight=False)


def print_report(report: RunReport, console: Console, what: str) -> None:
    """Warnings, a table of failed videos, and the one-line summary of a pipeline run."""
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if report.failed:
        t = Table(title=f"{what}: {len(report.failed)} video(s) failed (skipped; rerun to retry)")
        t.add_column("video")
        t.add_column("error")
        for name, err in report.failed.items():
            t.add_row(name, err)
        console.print(t)
    extra = f", {report.unparsed} unparsed answers" if report.unparsed else ""
    console.print(
        f"{what}: {len(report.done)} done, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed{extra}",
        highlight=False,
    )


def _none(value: str) -> str | None:
    return None if value.lower() in ("none", "random", "") else value


def _add_video_args(p: argparse.ArgumentParser) -> None:
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


def _clip_config(args: argparse.Namespace) -> ClipConfig:
    from ..models import ClipConfig

    return ClipConfig(model=args.clip_model, pretrained=args.clip_pretrained, device=args.device,
                      batch_size=args.clip_batch_size, preprocess=args.preprocess)


def _cmd_extract(args: argparse.Namespace) -> int:
    from ..models import load_clip

    console = Console(stderr=True)
    jobs = list_jobs(args.videos, args.dataset, args.annotations)
    encoder = load_clip(_clip_config(args))
    with RichProgress(console, units="frames") as progress:
        report = extract_features(jobs, args.out, encoder, fix_frame_count=args.fix_frame_count,
                                  overwrite=args.overwrite, progress=progress, batch_frames=args.clip_batch_size)
    print_report(report, console, "extract-features")
    return report.exit_code


def _vlm_config(args: argparse.Namespace) -> VLMConfig:
    from ..models import VLMConfig

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
    from ..models import load_vlm

    console = Console(stderr=True)
    cfg = _vlm_config(args)
    jobs = list_jobs(args.videos, args.dataset, args.annotations)
    backend = load_vlm(cfg)
    try:
        with RichProgress(console, units="segments") as progress:
            report = generate_responses(jobs, args.out, backend, n_sampled=cfg.n_frames,
                                        batch_size=cfg.batch_size, fix_frame_count=args.fix_frame_count,
                                        progress=progress)
    finally:
        backend.close()
    print_report(report, console, "generate")
    return report.exit_code


def _cmd_lrc(args: argparse.Namespace) -> int:
    from ..benchmarks import load_probabilities, load_responses
    from ..models import load_clip

    console = Console(stderr=True)
    responses = load_responses(args.responses)
    beside = probabilities_beside(args.responses)
    probabilities = load_probabilities(beside) if beside.is_file() else None
    encoder = load_clip(_clip_config(args))
    with RichProgress(console, videos="LRC") as progress:
        report = lrc_responses(responses, args.features, args.out, encoder.encode_texts, window=args.window,
                               probabilities=probabilities, progress=progress)
    print_report(report, console, "lrc")
    return report.exit_code


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
