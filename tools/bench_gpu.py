"""The model stage on one GPU, in one command: what a GPU owner runs to size a deployment.

    python tools/bench_gpu.py --out gpu.json        # InternVL2-8B-shaped random bf16 model on cuda, <= 8 min
    python tools/bench_gpu.py --tiny --out t.json   # tiny InternVL on the CPU (tests/tools keep this working)

It measures, with the project's own transformers backend and runtime (corevad_stream.App):
  sweep      generate-only segments/s by batch size (8 frames, 24 answer tokens every time);
  split      at one batch size: the processor on the CPU, the vision tower, prefill + 1 token, the full
             24-token answer;
  live       the largest number of looping 640x480 cameras held for `--seconds` with zero dropped segments
             (doubling, then bisection), with score latency p50/p99 (segment end -> score) and throughput;
  ratio      live segments/s at that capacity / generate-only segments/s at the live run's mean batch size;
  memory     peak GPU memory; the card's name, torch and transformers versions;
  describe   (--describe) describe "all" vs "on_demand" at the same batch sizes, with each segment's verdict
             scripted at a seeded anomalous rate (--anomalous-rates, default 8 % and 25 %): in-process by a
             first-token logits bias (transformers_backend.scripted_first_tokens: +1e4 on one token of the
             scripted label at the first answer step only; the other steps and p_anomalous stay the model's),
             through a server (--server URL, e.g. vLLM) by a per-segment structured-output regex naming the
             label. Segments/s and score latency (batch sent -> its scores back), and the on_demand / all
             ratio. In-process also "two_phase": on_demand delivered in two phases (backend.verdicts(), the
             runtime's split): score latency is the batch's verdicts out, description latency its
             descriptions out; one pass gives both at once.
JSON on stdout (and --out), a plain table on stderr.

On a GPU machine without pydantic (the runtime's config) install the wheels first; see
/work/.library/device/README.md or PLATFORM.md: `pip install --target /tmp/site .whl/*.whl` and
PYTHONPATH=/tmp/site. No ffmpeg or PyAV is needed: the test clip is written with OpenCV.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout (the GPU machine runs it so)

ANSWER_TOKENS = 24


def _need_runtime() -> None:
    missing = [m for m in ("pydantic", "yaml", "cv2") if _missing(m)]
    if missing:
        sys.exit(f"bench_gpu: missing Python packages {', '.join(missing)}: install them (on a GPU machine: carry "
                 "wheels, pip install --target /tmp/site .whl/*.whl, export PYTHONPATH=/tmp/site)")


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def write_clip(path: Path, *, seconds: int = 10, size: tuple[int, int] = (640, 480), fps: int = 30) -> Path:
    """A moving-pattern MP4 written with OpenCV (mp4v), so no ffmpeg is needed."""
    import cv2

    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not out.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(seconds * fps):
        img = np.stack([(xx + 4 * t) % 256, (yy + 2 * t) % 256, (xx + yy + 3 * t) % 256], axis=-1).astype(np.uint8)
        out.write(img)
    out.release()
    return path


def build_backend(tiny: bool, device: str, work: Path, max_batch: int, static_cache: bool = False
                  ) -> tuple[Any, str]:
    """The transformers backend with every answer exactly ANSWER_TOKENS long (random weights stop anywhere)."""
    from corevad.models import VLMConfig
    from corevad.models.transformers_backend import TransformersBackend

    if tiny:
        from corevad.models.tiny import build_tiny_internvl

        path = build_tiny_internvl(work / "tiny", image_size=112)
        backend = TransformersBackend(VLMConfig(model=str(path), device=device, max_new_tokens=ANSWER_TOKENS,
                                                batch_size=max_batch, static_cache=static_cache))
        name = "tiny InternVL (112 px, 16 tokens/frame)"
    else:
        from corevad.models.tiny import build_8b_shaped

        model, processor_dir = build_8b_shaped(device, False, work)
        backend = TransformersBackend(VLMConfig(model=str(processor_dir), device=device,
                                                max_new_tokens=ANSWER_TOKENS, batch_size=max_batch,
                                                static_cache=static_cache))
        backend.model = model
        backend.dtype = next(model.parameters()).dtype
        name = "InternVL2-8B-shaped, random bf16 (8 frames x 256 tokens)"
    orig = backend.model.generate

    def generate(**kw: Any) -> Any:
        kw["min_new_tokens"] = kw["max_new_tokens"]
        return orig(**kw)

    backend.model.generate = generate
    return backend, name


def _sync(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _clips(n: int, size: int, rng: np.random.Generator) -> list[Any]:
    from corevad.models import Clip

    return [Clip("bench", i, rng.integers(0, 256, size=(8, size, size, 3), dtype=np.uint8)) for i in range(n)]


def sweep(backend: Any, batches: list[int], repeats: int, frame: int) -> list[dict[str, Any]]:
    import torch

    rng = np.random.default_rng(0)
    backend.answer(_clips(1, frame, rng))  # warm-up
    rows = []
    for b in batches:
        clips = _clips(b, frame, rng)
        times = []
        for _ in range(repeats):
            _sync(torch)
            t0 = time.perf_counter()
            backend.run(backend.prepare(clips))
            _sync(torch)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"batch": b, "batch_s": round(med, 4), "segments_per_s": round(b / med, 3)})
    return rows


def _scripted_labels(n: int, rate: float, seed: int) -> list[int]:
    return [int(x) for x in np.random.default_rng(seed).random(n) < rate]


def _ratio_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """on_demand / all segments/s per (rate, batch)."""
    out = []
    for r in rows:
        if r["mode"] == "all":
            continue
        base = next(x for x in rows if x["mode"] == "all" and x["rate"] == r["rate"] and x["batch"] == r["batch"])
        out.append({"rate": r["rate"], "batch": r["batch"], "mode": r["mode"],
                    "segments_per_s_ratio": round(r["segments_per_s"] / base["segments_per_s"], 3)})
    return out


DESCRIBE_MODES = ("all", "on_demand", "two_phase")


def describe_modes(backend: Any, batches: list[int], rates: list[float], segments: int, frame: int
                   ) -> dict[str, Any]:
    """describe all vs on_demand (one pass) vs on_demand delivered in two phases (backend.verdicts, then the
    description pass), in-process, verdicts scripted per segment (scripted_first_tokens). Latencies per batch
    from its start in the model: score = its verdicts out (one pass: its whole answers), description = its
    descriptions out."""
    import torch

    from corevad.models.transformers_backend import scripted_first_tokens

    base_cfg = backend.config
    rows = []
    backend.answer(_clips(1, frame, np.random.default_rng(9)))  # warm-up
    for rate in rates:
        for b in batches:
            # The modes take turns on each batch (the same clips and script), so a load change on a shared
            # machine falls on all three alike.
            rng = np.random.default_rng(7)
            labels = _scripted_labels(segments, rate, seed=11)
            cell: dict[str, dict[str, Any]] = {m: {"lat": [], "desc_lat": [], "described": 0, "t": 0.0}
                                              for m in DESCRIBE_MODES}
            for s in range(0, segments - b + 1, b):
                clips = _clips(b, frame, rng)
                for mode in DESCRIBE_MODES:
                    c = cell[mode]
                    backend.config = base_cfg.model_copy(update={
                        "describe": "all" if mode == "all" else "on_demand", "describe_above": 1.0})
                    _sync(torch)
                    t0 = time.perf_counter()
                    prepared = backend.prepare(clips)
                    backend.generate_kwargs["logits_processor"] = scripted_first_tokens(
                        backend, labels[s : s + b], prompt_len=prepared[0][1]["input_ids"].shape[1])
                    if mode == "two_phase":
                        vp = backend.verdicts(clips, prepared)
                        _sync(torch)
                        c["lat"].append(time.perf_counter() - t0)
                        answers = vp.describe()
                    else:
                        answers = backend.run(prepared)
                    _sync(torch)
                    dt = time.perf_counter() - t0
                    if mode != "two_phase":
                        c["lat"].append(dt)
                    c["desc_lat"].append(dt)
                    c["t"] += dt
                    c["described"] += sum(a.described for a in answers)
            for mode in DESCRIBE_MODES:
                c = cell[mode]
                lat, desc_lat = c["lat"], c["desc_lat"]
                n = len(lat) * b
                rows.append({"mode": mode, "rate": rate, "batch": b, "segments": n, "described": c["described"],
                             "segments_per_s": round(n / c["t"], 3),
                             "score_latency_p50_s": round(float(np.percentile(lat, 50)), 4),
                             "score_latency_p99_s": round(float(np.percentile(lat, 99)), 4),
                             "description_latency_p50_s": round(float(np.percentile(desc_lat, 50)), 4),
                             "description_latency_p99_s": round(float(np.percentile(desc_lat, 99)), 4)})
                print(f"  describe {mode:9s} rate {rate:.2f} batch {b:3d}: {rows[-1]['segments_per_s']} seg/s, "
                      f"{c['described']}/{n} described, score latency p50 {rows[-1]['score_latency_p50_s']} p99 "
                      f"{rows[-1]['score_latency_p99_s']} s, descriptions p99 "
                      f"{rows[-1]['description_latency_p99_s']} s", file=sys.stderr, flush=True)
    backend.config = base_cfg
    backend.generate_kwargs.pop("logits_processor", None)
    return {"rows": rows, "ratios": _ratio_rows(rows), "score_latency": _latency_rows(rows)}


def _latency_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two-phase score latency / one-pass score latency (on_demand and all) per (rate, batch), p50 and p99."""
    out = []
    for r in rows:
        if r["mode"] != "two_phase":
            continue
        cell = {x["mode"]: x for x in rows if x["rate"] == r["rate"] and x["batch"] == r["batch"]}
        out.append({"rate": r["rate"], "batch": r["batch"], **{
            f"p{q}_vs_{base}": round(r[f"score_latency_p{q}_s"] / cell[base][f"score_latency_p{q}_s"], 3)
            for q in (50, 99) for base in ("on_demand", "all") if base in cell}})
    return out


def describe_server(url: str, model: str, batches: list[int], rates: list[float], segments: int
                    ) -> dict[str, Any]:
    """describe all vs on_demand (two_requests and stop, one pass; and two_requests in two phases: verdicts(),
    then the full requests) through an OpenAI-compatible server; each segment's verdict scripted by a
    structured-output regex naming its label (vLLM's structured_outputs). Two-phase rows also give the
    description latency (batch sent -> its descriptions back)."""
    from corevad.models import OpenAIOptions, VLMConfig
    from corevad.models.openai_backend import OpenAIBackend

    rows = []
    for rate in rates:
        labels = _scripted_labels(segments, rate, seed=11)
        for b in batches:
            for mode, via, phased in (("all", "two_requests", False), ("on_demand", "two_requests", False),
                                      ("on_demand", "stop", False), ("on_demand", "two_requests", True)):
                opts = OpenAIOptions(base_url=url, model=model, api_key_env=None, concurrency=b, timeout_s=300)
                backend = OpenAIBackend(VLMConfig(backend="openai", max_new_tokens=ANSWER_TOKENS, describe=mode,
                                                  describe_above=1.0, openai=opts.model_copy(
                                                      update={"describe_via": via})))
                plain = backend.build_request

                def build(clip: Any, *, max_tokens: int | None = None, _plain: Any = plain,
                          _labels: list[int] = labels) -> dict[str, Any]:
                    body = _plain(clip, max_tokens=max_tokens)
                    word = "Anomalous" if _labels[clip.index] else "Normal"
                    body["structured_outputs"] = {"regex": word + " scenes\\.\\n[A-Za-z ,]{1,60}\\."}
                    return body

                backend.build_request = build  # type: ignore[method-assign]
                rng = np.random.default_rng(7)
                backend.answer_scored(_clips(1, 448, rng))  # warm-up (the first request is slow)
                lat, desc_lat, described, t_all = [], [], 0, 0.0
                for s in range(0, segments - b + 1, b):
                    clips = [c.__class__(c.source, s + i, c.frames) for i, c in enumerate(_clips(b, 448, rng))]
                    t0 = time.perf_counter()
                    if phased:
                        vp = backend.verdicts(clips)
                        lat.append(time.perf_counter() - t0)
                        answers = vp.describe()
                    else:
                        answers = backend.answer_scored(clips)
                    dt = time.perf_counter() - t0
                    if not phased:
                        lat.append(dt)
                    desc_lat.append(dt)
                    t_all += dt
                    described += sum(a.described for a in answers)
                backend.close()
                n = len(lat) * b
                name = mode if mode == "all" else f"on_demand/{via}" + ("/two_phase" if phased else "")
                rows.append({"mode": name, "rate": rate, "batch": b, "segments": n, "described": described,
                             "requests": backend.requests_sent, "segments_per_s": round(n / t_all, 3),
                             "score_latency_p50_s": round(float(np.percentile(lat, 50)), 4),
                             "score_latency_p99_s": round(float(np.percentile(lat, 99)), 4),
                             "description_latency_p99_s": round(float(np.percentile(desc_lat, 99)), 4)})
                print(f"  server {name:22s} rate {rate:.2f} batch {b:3d}: {rows[-1]['segments_per_s']} seg/s, "
                      f"{described}/{n} described, latency p99 {rows[-1]['score_latency_p99_s']} s",
                      file=sys.stderr, flush=True)
    return {"rows": rows, "ratios": _ratio_rows(rows)}


def split(backend: Any, batch: int, frame: int) -> dict[str, float]:
    """Median of 3 of each part at one batch size."""
    import torch

    rng = np.random.default_rng(1)
    clips = _clips(batch, frame, rng)
    parts: dict[str, list[float]] = {"processor_s": [], "vision_s": [], "prefill_1_token_s": [],
                                     "answer_24_tokens_s": []}
    model = backend.model
    for _ in range(3):
        t0 = time.perf_counter()
        [(_, inputs)] = backend.prepare(clips)
        parts["processor_s"].append(time.perf_counter() - t0)
        on = inputs.to(backend.device)
        pixels = on["pixel_values"].to(backend.dtype)
        with torch.inference_mode():
            _sync(torch)
            t0 = time.perf_counter()
            model.get_image_features(pixel_values=pixels)
            _sync(torch)
            parts["vision_s"].append(time.perf_counter() - t0)
            for key, n in (("prefill_1_token_s", 1), ("answer_24_tokens_s", ANSWER_TOKENS)):
                _sync(torch)
                t0 = time.perf_counter()
                extra = {"cache_implementation": "static"} if backend.config.static_cache else {}
                model.generate(**{**on, "pixel_values": pixels}, max_new_tokens=n, do_sample=False, **extra)
                _sync(torch)
                parts[key].append(time.perf_counter() - t0)
    return {k: round(statistics.median(v), 4) for k, v in parts.items()}


async def live_trial(backend: Any, clip: Path, cameras: int, *, seconds: float, warmup_s: float, max_batch: int,
                     frame: int, overlap: bool) -> dict[str, Any]:
    from corevad_stream import App, MemorySink
    from corevad_stream.config import config_from_dict

    state = Path(tempfile.mkdtemp(prefix="corevad-bench-gpu-"))
    cfg = config_from_dict({
        "cameras": [{"name": f"cam{i}", "url": str(clip), "loop": True} for i in range(cameras)],
        "metrics": {"enabled": False}, "store": {"enabled": False},
        "alerts": {"snapshot": False}, "refinement": {"use_features": False},
        "runtime": {"max_batch": max_batch, "frame_size": frame, "state_dir": str(state),
                    "overlap_preprocessing": overlap, "stats_interval_s": 3600},
    })
    sink = MemorySink()
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        t_end = time.monotonic() + warmup_s + 120
        while time.monotonic() < t_end and not all(c.scored for c in app.counters.values()):
            await asyncio.sleep(0.1)
        await asyncio.sleep(warmup_s)
        base = {n: (c.drops, c.scored, c.unanswered) for n, c in app.counters.items()}
        batches0, t0, mark = app.worker.batches, time.time(), len(sink.messages)
        await asyncio.sleep(seconds)
        dt = time.time() - t0
        drops = sum(c.drops - base[n][0] for n, c in app.counters.items())
        scored = sum(c.scored - base[n][1] for n, c in app.counters.items())
        unanswered = sum(c.unanswered - base[n][2] for n, c in app.counters.items())
        batches = app.worker.batches - batches0
        lat = [m.payload["latency_s"] for m in sink.messages[mark:] if m.kind == "score" and m.payload["available"]]
    a = np.asarray(lat) if lat else np.asarray([np.nan])
    return {"cameras": cameras, "held": drops == 0 and unanswered == 0 and scored > 0, "drops": drops,
            "unanswered": unanswered, "scored_per_s": round(scored / dt, 3),
            "mean_batch": round(scored / batches, 2) if batches else None,
            "latency_p50_s": round(float(np.percentile(a, 50)), 3), "latency_p99_s": round(float(np.percentile(a, 99)),
                                                                                         3)}


async def capacity(backend: Any, clip: Path, *, start: int, most: int, progress: Any = None,
                   **kw: Any) -> dict[str, Any]:
    """Largest camera count held with zero drops: doubling from `start`, then bisection. progress(trials)
    after each trial."""
    trials: list[dict[str, Any]] = []

    async def held(n: int) -> bool:
        r = await live_trial(backend, clip, n, **kw)
        trials.append(r)
        if progress is not None:
            progress(trials)
        print(f"  live {n:3d} cameras: {'held' if r['held'] else 'NOT held'}, {r['drops']} drops, "
              f"{r['scored_per_s']} seg/s, p50 {r['latency_p50_s']} s, p99 {r['latency_p99_s']} s",
              file=sys.stderr, flush=True)
        return bool(r["held"])

    lo, hi, n = 0, most + 1, max(1, start)  # lo: largest count held; hi: smallest not held
    while n <= most:
        if await held(n):
            lo, n = n, n * 2
        else:
            hi = n
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await held(mid):
            lo = mid
        else:
            hi = mid
    best = max((t for t in trials if t["held"] and t["cameras"] == lo), key=lambda t: t["scored_per_s"],
               default=None)
    # Held at the largest count tried: the model was not the limit, so the ratio below says little.
    bound = "max_cameras (raise --max-cameras)" if lo == most else "drops"
    return {"cameras_held": lo, "limited_by": bound, "at_capacity": best, "trials": trials}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny InternVL on the CPU (minutes, no GPU)")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="sweep (default 1 4 8 16 32; tiny 1 2 4)")
    ap.add_argument("--split-batch", type=int, default=None, help="batch of the time split (default 16; tiny 4)")
    ap.add_argument("--max-batch", type=int, default=None, help="runtime.max_batch live (default 16; tiny 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=None, help="each live trial (default 60; tiny 5)")
    ap.add_argument("--warmup", type=float, default=None, help="before each trial's window (default 5; tiny 2)")
    ap.add_argument("--start-cameras", type=int, default=None, help="first live trial (default 6; tiny 1)")
    ap.add_argument("--max-cameras", type=int, default=None, help="largest trial (default 32; tiny 4)")
    ap.add_argument("--serial", action="store_true", help="no preprocessing overlap (the before figure)")
    ap.add_argument("--static-cache", action="store_true", help="static KV cache (compiled decoding on CUDA)")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--describe", action="store_true", help="also the describe modes stage (see above)")
    ap.add_argument("--describe-only", action="store_true", help="only the describe modes stage")
    ap.add_argument("--anomalous-rates", type=float, nargs="+", default=[0.08, 0.25])
    ap.add_argument("--describe-batches", type=int, nargs="+", default=None,
                    help="batch sizes of the describe stage (default 16; tiny 4 8)")
    ap.add_argument("--describe-segments", type=int, default=None,
                    help="segments per (rate, batch, mode) cell (default 64; tiny 16)")
    ap.add_argument("--server", help="describe stage through this OpenAI-compatible server (its /v1 root)")
    ap.add_argument("--server-model", default="tiny", help="model name the server expects")
    args = ap.parse_args(argv)
    _need_runtime()
    import torch
    import transformers

    tiny = args.tiny
    device = args.device or ("cpu" if tiny else "cuda")
    batches = args.batches or ([1, 2, 4] if tiny else [1, 4, 8, 16, 32])
    split_batch = args.split_batch or (4 if tiny else 16)
    max_batch = args.max_batch or (4 if tiny else 16)
    frame = 112 if tiny else 448
    t_start = time.monotonic()
    report: dict[str, Any] = {
        "device": device, "card": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "answer_tokens": ANSWER_TOKENS,
        "overlap_preprocessing": not args.serial, "static_cache": args.static_cache,
    }

    def save() -> None:  # after every stage: a run cut short by a time limit still leaves its figures
        if args.out:
            report["wall_s"] = round(time.monotonic() - t_start, 1)
            args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    d_batches = args.describe_batches or ([4, 8] if tiny else [16])
    d_segments = args.describe_segments or (16 if tiny else 64)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backend, report["model"] = build_backend(tiny, device, work,
                                                 max(max(batches), split_batch, max_batch, max(d_batches)),
                                                 static_cache=args.static_cache)
        if args.describe or args.describe_only:
            report["describe"] = {"in_process": describe_modes(backend, d_batches, args.anomalous_rates,
                                                               d_segments, frame)}
            save()
            if args.server:
                report["describe"]["server"] = {"url": args.server, **describe_server(
                    args.server, args.server_model, d_batches, args.anomalous_rates, d_segments)}
                save()
            if args.describe_only:
                backend.close()
                print(json.dumps(report, indent=2))
                return 0
        print(f"bench_gpu: {report['model']} on {report['card']}", file=sys.stderr, flush=True)
        report["sweep"] = sweep(backend, batches, args.repeats, frame)
        for r in report["sweep"]:
            print(f"  batch {r['batch']:3d}: {r['segments_per_s']} segments/s ({r['batch_s']} s)", file=sys.stderr)
        save()
        report["split"] = {"batch": split_batch, **split(backend, split_batch, frame)}
        print(f"  split at batch {split_batch}: {report['split']}", file=sys.stderr, flush=True)
        if device.startswith("cuda"):
            report["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        save()
        if not args.skip_live:
            clip = write_clip(work / "cam.mp4")

            def progress(trials: list[dict[str, Any]]) -> None:
                report["live_trials_so_far"] = trials
                save()

            live = asyncio.run(capacity(
                backend, clip, progress=progress, start=args.start_cameras or (1 if tiny else 6),
                most=args.max_cameras or (4 if tiny else 32), seconds=args.seconds or (5.0 if tiny else 60.0),
                warmup_s=args.warmup or (2.0 if tiny else 5.0), max_batch=max_batch, frame=frame,
                overlap=not args.serial))
            report.pop("live_trials_so_far", None)
            report["live"] = live
            best = live["at_capacity"]
            if best and best["mean_batch"]:
                b = max(1, round(best["mean_batch"]))
                gen = sweep(backend, [b], args.repeats, frame)[0]
                report["generate_only_at_live_batch"] = gen
                report["live_over_generate_only"] = round(best["scored_per_s"] / gen["segments_per_s"], 3)
        if device.startswith("cuda"):
            report["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        backend.close()
    save()
    report["wall_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
