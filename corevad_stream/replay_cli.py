"""Sub-commands of `corevad-stream` for benchmark replay and the online-versus-offline report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from corevad.benchmarks import DATASETS, VideoGT, load_benchmark, load_responses, match_responses
from corevad.errors import CorevadError
from corevad.models.base import ImageTextEncoder, VLMBackend
from corevad.models.replay import DESCRIBE_MODES
from corevad.params import OfflineParams
from corevad.splits import split_videos

from .config import read_config_file, shipped_config
from .errors import StreamError

if TYPE_CHECKING:
    from corevad.models.text import CachedTextEncoder

log = logging.getLogger(__name__)

DEFAULT_CONFIG = shipped_config("replay_ucf.yaml")
_SECTIONS = {"dataset", "refinement", "alerts", "runtime", "model", "mqtt"}
_REFINEMENT_FLAGS = {"smooth_length": int, "smooth_sigma": float, "smooth_lookahead": int, "lrc_lookahead": int}
_ALERT_FLAGS = {"open_threshold": float, "close_threshold": float, "close_after_s": float, "cooldown_s": float}


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # noqa: SLF001
    """Register the replay/report sub-commands on the `corevad-stream` parser."""
    for report in (False, True):
        if report:
            p = subparsers.add_parser(
                "report", help="Offline (paper) and online (live runtime) figures side by side on a benchmark.",
                description="Replay a benchmark through the live runtime and print the paper's offline protocol "
                            "beside it on the same answers, with the parameters used.")
        else:
            p = subparsers.add_parser(
                "replay", help="Replay UCF-Crime / XD-Violence through the live runtime (online figures).",
                description="Every video becomes a camera of the live runtime (same sources, batcher, causal "
                            "scoring and alerts); prints frame AUC/AP, per class, LaAP≈, detection delay "
                            "and false alerts per hour.")
        _add_args(p)
        p.set_defaults(func=lambda a, r=report: _main(a, report=r))


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--annotations", required=True, type=Path,
                   help="UCF-Crime: test_annotations.tsv; XD-Violence: xd_annotations.json")
    src = p.add_argument_group("input (at least one)")
    src.add_argument("--videos", type=Path, metavar="DIR",
                     help="folder of the benchmark videos (<name>.mp4, searched recursively), decoded by the "
                          "live file source as fast as the pipeline takes them")
    src.add_argument("--responses", type=Path, metavar="FILE",
                     help="recorded answers (video -> one answer per 30-frame segment): the replay backend; "
                          "alone, segments are frame-less (no decoding)")
    p.add_argument("--probabilities", type=Path, metavar="FILE",
                   help="with --responses: each answer's P(Anomalous) (corevad generate's <stem>.p_anomalous.json), "
                        "scored instead of the 0/1 label where known (sets refinement.segment_score: p_anomalous)")
    p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                   help="YAML with refinement / alerts / runtime / model / mqtt sections "
                        f"(default {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parent.parent)}: chosen on the "
                        "UCF-Crime tune half by tools/tune_causal.py)")
    for flag, typ in {**_REFINEMENT_FLAGS, **_ALERT_FLAGS}.items():
        p.add_argument(f"--{flag.replace('_', '-')}", type=typ, dest=flag, help="override the config")
    p.add_argument("--half", choices=("all", "tune", "test"), default="all",
                   help="replay one half of the fixed split (corevad.splits) or all videos")
    p.add_argument("--limit", type=int, help="only the first N videos (quick looks)")
    p.add_argument("--concurrency", type=int, default=32, help="videos replayed at once, each a camera")
    p.add_argument("--tiny-model", action="store_true",
                   help="with --videos and no --responses: tiny RANDOM models (scores meaningless)")
    p.add_argument("--mqtt", metavar="HOST:PORT",
                   help="also publish everything to this MQTT broker (off by default)")
    p.add_argument("--mqtt-prefix", default="corevad-replay", help="topic prefix with --mqtt")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out videos with missing or miscounted answers / missing files instead of stopping")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write online_scores.npz (per-frame, exact GT counts), alerts.jsonl, summary.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--plots", type=Path, metavar="DIR", help="PNG per plotted video: online and offline curves "
                                                            "over the GT spans")
    p.add_argument("--html", type=Path, metavar="FILE",
                   help="write the review page of this replay (videos, alerts over ground-truth spans) as one "
                        "self-contained HTML file")
    p.add_argument("--plot-videos", nargs="*", help="videos to plot (default: the first 5 anomalous)")
    p.add_argument("--describe", choices=DESCRIBE_MODES, default="all",
                   help="with --responses: on_demand replays what describe: on_demand gives (every 'Normal' "
                        "answer reduced to 'Normal scenes.', no description); deferred: on_demand delivered in two "
                        "phases (scoring sees only verdict lines, the anomalous answers' descriptions come after "
                        "and reach only the explanations); all: the answers as recorded")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="95%% intervals for AUC / AP / false alerts per hour from N video-level bootstrap "
                        "resamples (corevad.bootstrap; seeded); 0: none")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--timeout", type=float, default=None, help="give up a wave after this many seconds")


def _load_config(path: Path) -> dict[str, Any]:
    data = read_config_file(path, what="replay config")
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    return data


def _main(args: argparse.Namespace, *, report: bool) -> int:
    err = Console(stderr=True)
    try:
        return _run(args, report=report, err=err)
    except (CorevadError, StreamError, ValueError, FileNotFoundError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2


def _run(args: argparse.Namespace, *, report: bool, err: Console) -> int:
    from corevad.models.replay import ReplayBackend

    from .replay import frameless_inputs, run_replay, video_inputs

    if args.videos is None and args.responses is None:
        raise ValueError("give --videos DIR, --responses FILE, or both")
    if args.probabilities is not None and args.responses is None:
        raise ValueError("--probabilities goes with --responses (the answers they belong to)")
    if args.describe != "all" and args.responses is None:
        raise ValueError("--describe goes with --responses (a live model takes describe from its model config)")
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    cfg = _load_config(args.config)
    refinement = dict(cfg.get("refinement") or {})
    alerts = dict(cfg.get("alerts") or {})
    refinement.update({k: getattr(args, k) for k in _REFINEMENT_FLAGS if getattr(args, k) is not None})
    if args.probabilities is not None:
        refinement["segment_score"] = "p_anomalous"
    alerts.update({k: getattr(args, k) for k in _ALERT_FLAGS if getattr(args, k) is not None})
    mqtt = dict(cfg.get("mqtt") or {}) or None
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--mqtt {args.mqtt!r}: expected HOST:PORT")
        mqtt = {**(mqtt or {}), "host": host, "port": int(port), "prefix": args.mqtt_prefix}
    videos = split_videos(load_benchmark(args.dataset, args.annotations), args.half)
    if args.limit is not None:
        videos = videos[: args.limit]
    skipped: list[str] = []
    backend: VLMBackend | None = None
    encoder: ImageTextEncoder | None = None
    if args.responses is not None:
        responses = load_responses(args.responses)
        pairs, bad = match_responses(videos, responses, 30, args.skip_bad)
        skipped += [f"{e.video}: {e}" for e in bad]
        videos = [v for v, _ in pairs]
        backend = ReplayBackend(responses, probabilities=args.probabilities, describe=args.describe)
    if args.videos is not None:
        inputs, missing = video_inputs(videos, args.videos, skip_missing=args.skip_bad)
        skipped += [f"{m}: no video file" for m in missing]
    else:
        inputs = frameless_inputs(videos)
    model_cfg = dict(cfg.get("model") or {})
    if backend is None:
        from .config import ModelConfig
        from .models import TINY_NOTICE, build_models

        if args.tiny_model:
            model_cfg["tiny"] = True
            err.print(f"[bold white on red] {TINY_NOTICE} [/]")
        backend, encoder = build_models(ModelConfig.model_validate(model_cfg))
    assert backend is not None
    text_encoder = None
    if refinement.get("text_context"):
        from corevad.models.text import load_text_encoder

        from .config import ModelConfig

        text_cfg = ModelConfig.model_validate(model_cfg).text
        # Cached on disk per model: a second replay of the same answers embeds nothing.
        text_encoder = load_text_encoder(text_cfg.model, device=text_cfg.device, clip=encoder, disk_cache=True)
        if args.responses is not None:
            _embed_descriptions(text_encoder, [a for v in videos for a in responses[v.name]], err)
    for s in skipped:
        err.print(f"[yellow]skipped:[/] {escape(s)}")
    app_log = logging.getLogger("corevad_stream.app")
    if app_log.getEffectiveLevel() > logging.DEBUG:
        app_log.setLevel(logging.WARNING)  # hundreds of videos: "camera X online/ended" is noise here
    with Progress(TextColumn("[bold]replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("videos", total=len(inputs))
        try:
            result = asyncio.run(run_replay(
                inputs, backend=backend, encoder=encoder, text_encoder=text_encoder, refinement=refinement,
                alerts=alerts, mqtt=mqtt,
                runtime=cfg.get("runtime"), concurrency=args.concurrency, timeout_s=args.timeout,
                on_video=lambda _v: progress.advance(task)))
        finally:
            backend.close()
            if text_encoder is not None:
                text_encoder.save()
    summary = summarize(result, dataset=args.dataset, half=args.half, report=report,
                        decoded=args.videos is not None, skipped=skipped, config=str(args.config))
    summary["describe"] = args.describe
    if args.bootstrap:
        summary["intervals"] = {k: v.to_dict() for k, v in
                                video_intervals(result, n_resamples=args.bootstrap, seed=args.seed).items()}
    if args.out:
        write_outputs(result, args.out, summary)
    if args.plots:
        _plots(result, args.plots, args.plot_videos)
    if args.html:
        from .webpage import write_replay_page

        write_replay_page(result, args.html, title=f"{args.dataset} replay ({args.half}, {len(result.videos)} videos)")
    if args.json:
        print(json.dumps(summary, indent=2, default=_json_default))
    else:
        print_summary(summary, Console(), report=report)
    return 0


def _embed_descriptions(text_encoder: CachedTextEncoder, answers: list[str], err: Console) -> None:
    """Embed the recorded answers' descriptions the cache lacks, with a progress bar, before the replay.

    A cold replay with the text context otherwise spends minutes (about 20,900 distinct UCF-Crime
    descriptions on a CPU) inside the first wave with nothing moving on the screen; after this step the
    replay reads the cache only. The worker embeds each answered segment's parsed description: the same texts.
    """
    from corevad.prompt import parse_answer

    todo = text_encoder.missing([parse_answer(a).description for a in answers])
    if not todo:
        return
    with Progress(TextColumn("[bold]embedding answer descriptions"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("texts", total=len(todo))
        progress.console.print(f"{len(todo)} description(s) not in the sentence-embedding cache: embedding them "
                               f"once (cached in {text_encoder.path or 'memory'}; a second run skips this)",
                               highlight=False)
        text_encoder.warm(todo, progress=lambda done, _total: progress.update(task, completed=done))
    text_encoder.save()  # a run stopped later keeps what was embedded


def summarize(result: Any, *, dataset: str, half: str, report: bool, decoded: bool, skipped: list[str],
              config: str) -> dict[str, Any]:
    """Everything the commands print, as one JSON-able dict."""
    from .replay import alert_figures, offline_figures, online_figures

    out: dict[str, Any] = {
        "dataset": dataset, "half": half, "videos": len(result.videos), "config": config,
        "input": "decoded videos" if decoded else "frame-less segments (recorded answers)",
        "backend": result.backend, "use_features": result.use_features,
        "params": {"causal": asdict(result.params), "delay_segments": result.params.delay,
                   "alerts": asdict(result.alert_params)},
        "frames": int(sum(v.gt.frames for v in result.videos)),
        "segments": result.segments, "wall_s": result.wall_s, "segments_per_s": result.segments_per_s,
        "drops": result.drops, "missing_segments": int(sum(v.missing_segments for v in result.videos)),
        "extra_segments": int(sum(v.extra_segments for v in result.videos)),
        "unparsed": int(sum(v.unparsed for v in result.videos)),
        "online": online_figures(result).to_dict(), "alerts": alert_figures(result).to_dict(),
        "skipped": skipped,
    }
    if report:
        out["offline"] = offline_figures(result.videos).to_dict()
        out["params"]["offline"] = asdict(OfflineParams())
    return out


def video_statistics(result: Any, videos: Any = None) -> dict[str, Any]:
    """The replay's figures as functions of per-video weights (corevad.bootstrap): frame AUC and AP of the online
    scores, false alerts per hour of normal video."""
    from corevad.bootstrap import FrameRanks, rate_per_hour
    from corevad.latency import FPS, count_false_alerts

    vids = list(result.videos if videos is None else videos)
    ranks = FrameRanks([v.frame_scores for v in vids], [v.gt.gt for v in vids])
    false = [0 if v.gt.is_anomalous else count_false_alerts(v.gt.spans, [a.interval() for a in v.alerts], FPS)
             for v in vids]
    hours = [0.0 if v.gt.is_anomalous else v.gt.frames / FPS / 3600.0 for v in vids]
    return {"auc": ranks.auc, "ap": ranks.ap, "false_alerts_per_hour": rate_per_hour(false, hours)}


def video_intervals(result: Any, videos: Any = None, *, n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """95 % video-level bootstrap intervals of the replay's AUC, AP and false alerts per hour."""
    from corevad.bootstrap import bootstrap

    stats = video_statistics(result, videos)
    n = len(result.videos if videos is None else videos)
    return {k: bootstrap(f, n, n_resamples=n_resamples, seed=seed) for k, f in stats.items()}


def print_summary(s: dict[str, Any], console: Console, *, report: bool) -> None:
    on = s["online"]
    off = s.get("offline")
    t = Table(title=f"{s['dataset']} ({s['half']}, {s['videos']} videos) — "
                    + ("offline (paper) vs online (live runtime)" if report else "online (live runtime)")
                    + ("" if s["use_features"] else " — text-only: no CLIP features"))
    t.add_column("scope")
    t.add_column("videos", justify="right")
    if report:
        t.add_column("offline AUC %", justify="right")
    t.add_column("online AUC %", justify="right")
    if report:
        t.add_column("offline AP %", justify="right")
    t.add_column("online AP %", justify="right")

    def row(name: str, videos: str, o: dict[str, Any] | None, n: dict[str, Any], **kw: Any) -> None:
        cells = [name, videos]
        if report:
            cells.append(_pct(o["auc"]) if o else "")
        cells.append(_pct(n["auc"]))
        if report:
            cells.append(_pct(o["ap"]) if o else "")
        cells.append(_pct(n["ap"]))
        t.add_row(*cells, **kw)

    row("all", str(s["videos"]), off, on, style="bold")
    off_cls = {c["class"]: c for c in (off or {}).get("per_class", [])}
    for c in on["per_class"]:
        row(c["class"], str(c["videos"]), off_cls.get(c["class"]), c)
    console.print(t)
    a = s["alerts"]
    p = s["params"]
    console.print(
        f"LaAP≈ (latency-aware AP; an approximation of arXiv 2505.19022, defined in corevad/latency.py): "
        f"online {_pct(on['laap_approx'])} % (lookahead {p['delay_segments']} s charged as latency)"
        + (f", offline {_pct(off['laap_approx'])} %" if off else ""))
    console.print(
        f"Alerts: {a['alerts']} published. Anomalous videos detected: {a['detected']}/{a['anomalous_videos']} "
        f"({a['alerted_before_onset']} by an alert already open at the GT start). Delay from GT start to the "
        f"first alert: median {a['median_delay_s']:.1f} s, p90 {a['p90_delay_s']:.1f} s (including "
        f"{a['publication_latency_s']:.0f} s until a segment's score is final); without the videos already "
        f"alerted: median {a['median_delay_after_onset_s']:.1f} s, p90 {a['p90_delay_after_onset_s']:.1f} s. "
        f"False alerts: "
        f"{a['false_alerts']} in {a['normal_hours']:.2f} h of normal video = {a['false_alerts_per_hour']:.2f}/h.")
    if "intervals" in s:
        iv = s["intervals"]
        scale = {"auc": 100.0, "ap": 100.0, "false_alerts_per_hour": 1.0}
        console.print("95 % video-level bootstrap intervals (" + str(iv["auc"]["resamples"]) + " resamples): "
                      + ", ".join(f"{k} {scale[k] * v['estimate']:.2f} [{scale[k] * v['low']:.2f}, "
                                  f"{scale[k] * v['high']:.2f}]" for k, v in iv.items()))
    pt = Table(title="parameters", show_header=True)
    pt.add_column("protocol")
    pt.add_column("values")
    pt.add_row("online (causal)", _kv(p["causal"]))
    pt.add_row("alerts", _kv(p["alerts"]))
    if report:
        pt.add_row("offline (paper)", _kv(p["offline"]))
    console.print(pt)
    console.print(f"Input: {s['input']}, backend {s['backend']}, config {s['config']}. {s['segments']:,} segments "
                  f"in {s['wall_s']:.1f} s ({s['segments_per_s']:.0f} segments/s); drops {s['drops']}, missing "
                  f"{s['missing_segments']}, extra {s['extra_segments']}, unparsed answers {s['unparsed']}.")


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f}"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def write_outputs(result: Any, out: Path, summary: dict[str, Any]) -> None:
    """online_scores.npz (video -> float32 per frame), alerts.jsonl, summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "online_scores.npz",
                        **{v.gt.name: v.frame_scores.astype(np.float32) for v in result.videos})
    with (out / "alerts.jsonl").open("w", encoding="utf-8") as f:
        for v in result.videos:
            for a in v.alerts:
                f.write(json.dumps(a.to_dict()) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")


def _plots(result: Any, out: Path, wanted: list[str] | None) -> None:
    from corevad.plots import plot_video

    from .replay import offline_frame_scores

    by_name = {v.gt.name: v for v in result.videos}
    if wanted:
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            raise ValueError(f"--plot-videos: not in this replay: {', '.join(unknown)}")
        chosen = [by_name[w] for w in wanted]
    else:
        chosen = [v for v in result.videos if v.gt.is_anomalous][:5]
    offline = offline_frame_scores(chosen)
    for v, off in zip(chosen, offline, strict=True):
        gt: VideoGT = v.gt
        plot_video(gt, {"online (causal)": v.frame_scores, "offline (paper)": off}, out)
