"""`corevad eval`: frame-level AUC/AP of recorded answers on a benchmark, as a rich table or JSON."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..benchmarks import DATASETS, load_benchmark, load_probabilities, load_responses
from ..config import load_method_params
from ..defaults import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, DEFAULT_TEXT_MODEL
from ..errors import CorevadError
from ..params import CausalParams, OfflineParams

if TYPE_CHECKING:  # scikit-learn (metrics) loads only when a command evaluates: `--help` stays fast
    from collections.abc import Callable, Sequence

    import numpy as np

    from ..evaluate import EvalResult

_OFFLINE_FLAGS = {"tau": float, "kernel_size": int, "sigma": float, "lrc_window": int}
_CAUSAL_FLAGS = {"lrc_lookback": int, "lrc_lookahead": int, "refine_window": int, "smooth_length": int,
                 "smooth_sigma": float, "smooth_lookahead": int, "text_window": int, "text_tau": float,
                 "text_mix": float}


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `corevad eval` on the parser."""
    p = sub.add_parser("eval", help="frame-level AUC/AP of recorded answers on UCF-Crime or XD-Violence",
                       description="Score every test video from its per-segment answers and print AUC/AP.")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--annotations", required=True,
                   help="UCF-Crime: test_annotations.tsv; XD-Violence: xd_annotations.json")
    p.add_argument("--responses", required=True, help="JSON: video -> list of answers, one per 30-frame segment")
    p.add_argument("--mode", choices=("offline", "causal"), default="offline",
                   help="offline = the paper's protocol; causal = what the live monitor can compute")
    p.add_argument("--config", help="YAML with offline:/causal: parameter sections "
                                    "(default: the shipped corevad/data/eval.yaml)")
    p.add_argument("--features", metavar="DIR",
                   help="folder of <video>_CLIP_features.npy (frames x dim); enables softmax refinement")
    p.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL, help="open_clip model name for the text side")
    p.add_argument("--clip-pretrained", default=DEFAULT_CLIP_PRETRAINED,
                   help="open_clip pretrained tag or checkpoint path")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--apply-lrc", action="store_true",
                   help="the responses are raw VLM answers: run Local Response Cleaning first (needs --features)")
    for name, typ in _OFFLINE_FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, dest=name, help="offline parameter")
    p.add_argument("--centred-kernel", action="store_true", default=None, help="centred Gaussian grid")
    p.add_argument("--no-position-weighting", action="store_false", dest="position_weighting", default=None)
    p.add_argument("--paper-precision", action="store_true", default=None,
                   help="reproduce the float16 casts of the authors' eval script")
    for name, typ in _CAUSAL_FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, dest=name, help="causal parameter")
    p.add_argument("--text-context", action="store_true",
                   help="causal mode without --features: text-anchored context refinement with a sentence encoder")
    p.add_argument("--text-model", default=DEFAULT_TEXT_MODEL,
                   help="sentence-transformers hub id or local folder for --text-context")
    p.add_argument("--start-prior", action="store_true", default=None, dest="start_prior",
                   help="causal mode: count the smoothing taps before a video's start as normal")
    p.add_argument("--probabilities", metavar="JSON",
                   help="label probabilities (corevad generate's <out stem>.p_anomalous.json): score P(Anomalous) "
                        "instead of the 0/1 label where the backend gave one")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out videos whose answers are missing or miscounted instead of stopping")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--plots", metavar="DIR", help="write one PNG per video (score curve over GT spans)")
    p.add_argument("--plot-videos", nargs="*", help="only plot these videos (default: all)")
    p.set_defaults(func=cmd_eval)


def _params(args: argparse.Namespace) -> tuple[OfflineParams, CausalParams]:
    offline, causal = load_method_params(args.config)
    off = {f.name: getattr(args, f.name) for f in fields(OfflineParams)
           if getattr(args, f.name, None) is not None}
    cau = {n: getattr(args, n) for n in _CAUSAL_FLAGS if getattr(args, n, None) is not None}
    if getattr(args, "start_prior", None):
        cau["start_prior"] = True
    if "tau" in off:
        cau["tau"] = off["tau"]
    return offline.with_(**off), causal.with_(**cau)


def _text_encoder(args: argparse.Namespace) -> Callable[[Sequence[str]], np.ndarray] | None:
    if not args.features:
        if args.apply_lrc:
            raise CorevadError("--apply-lrc needs --features (LRC compares answers with the frames)")
        return None
    from ..models import load_clip

    encoder = load_clip(model=args.clip_model, pretrained=args.clip_pretrained, device=args.device)
    return encoder.encode_texts


def _table(result: EvalResult, dataset: str, offline: OfflineParams, causal: CausalParams) -> Table:
    params = offline if result.mode == "offline" else causal
    t = Table(title=f"{dataset} — {result.mode} protocol"
                    f" ({'CLIP-refined' if result.used_features else 'text-only: no CLIP features'})")
    t.add_column("scope")
    t.add_column("videos", justify="right")
    t.add_column("AUC %", justify="right")
    t.add_column("AP %", justify="right")
    t.add_row("all", str(result.videos), f"{100 * result.auc:.2f}", f"{100 * result.ap:.2f}", style="bold")
    for c in result.per_class:
        t.add_row(c.cls, str(c.videos), f"{100 * c.auc:.2f}", "")
    by_p = f", {result.probability_segments:,} scored by P(Anomalous)" if result.probability_segments else ""
    t.caption = (f"{result.frames:,} frames ({result.anomalous_frames:,} anomalous), {result.segments:,} answers, "
                 f"{result.unparsed} unparsed (scored 0), {len(result.skipped)} videos skipped{by_p}\n"
                 f"parameters: {params}")
    return t


def cmd_eval(args: argparse.Namespace) -> int:
    offline, causal = _params(args)
    from ..evaluate import evaluate

    videos = load_benchmark(args.dataset, args.annotations)
    responses = load_responses(args.responses)
    probabilities = load_probabilities(args.probabilities) if args.probabilities else None
    encoder = _text_encoder(args)
    sentence = None
    if args.text_context:
        if args.mode != "causal":
            raise CorevadError("--text-context is a causal-mode refinement: add --mode causal")
        from ..models.text import load_text_encoder

        sentence_model = load_text_encoder(args.text_model, disk_cache=True)
        sentence = sentence_model.encode_texts
    err = Console(stderr=True)
    with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("videos", total=len(videos))
        result = evaluate(videos, responses, mode=args.mode, offline=offline, causal=causal,
                          features_dir=args.features, text_encoder=encoder, apply_lrc=args.apply_lrc,
                          sentence_encoder=sentence, probabilities=probabilities,
                          skip_bad=args.skip_bad, keep_scores=bool(args.plots),
                          on_video=lambda _v: progress.advance(task))
    for e in result.skipped:
        err.print(f"[yellow]skipped:[/] {escape(str(e))}")
    if args.plots:
        from ..plots import plot_video

        wanted = set(args.plot_videos) if args.plot_videos else None
        for v in videos:
            if v.name in result.scores and (wanted is None or v.name in wanted):
                plot_video(v, {result.mode: result.scores[v.name].frame_scores}, args.plots)
    if args.json:
        print(json.dumps({"dataset": args.dataset, **result.to_dict(),
                          "params": {"offline": _asdict(offline), "causal": _asdict(causal)}}, indent=2))
    else:
        Console().print(_table(result, args.dataset, offline, causal))
    return 0


def _asdict(p: OfflineParams | CausalParams) -> dict[str, Any]:
    return {f.name: getattr(p, f.name) for f in fields(p)}
