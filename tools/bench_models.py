"""Model speed: transformers-backend segments/s (tiny CPU model, or an InternVL2-8B-shaped random model on
GPU) and CLIP frames/s.

    python tools/bench_models.py                        # tiny InternVL on CPU, batch 1 and 8; tiny CLIP
    python tools/bench_models.py --vlm-batches 1 8 16 --repeats 5
    python tools/bench_models.py --internvl2-8b --meta   # build the 8B shape on the meta device (smoke)
    python tools/bench_models.py --internvl2-8b --device cuda --vlm-batches 1 8 16   # on a GPU machine

The 8B-shaped model copies InternVL2-8B's layer sizes (InternViT-300M 448 px, 24 layers x 1024; an
InternLM2.5-7B-sized llama-style LLM, 32 layers x 4096, GQA 8 KV heads, 92,553 vocab), 8 frames x 256
image tokens per segment and a fixed 24 generated tokens, with random weights: the speed of the real
model without its download.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corevad.models import Clip, ClipConfig, VLMConfig, load_clip  # noqa: E402
from corevad.models.tiny import build_8b_shaped, build_tiny_internvl, register_tiny_clip  # noqa: E402

FIXED_NEW_TOKENS = 24


def _segments(n: int, rng: np.random.Generator, size: tuple[int, int] = (240, 320)) -> list[Clip]:
    return [Clip("bench", i, rng.integers(0, 256, size=(8, *size, 3), dtype=np.uint8)) for i in range(n)]


def bench_vlm(backend: object, batches: list[int], repeats: int, fixed_tokens: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    if fixed_tokens:
        # Every answer exactly FIXED_NEW_TOKENS long, whatever the random weights produce.
        orig = backend.model.generate

        def generate(**kw: object) -> object:
            kw["min_new_tokens"] = kw["max_new_tokens"] = FIXED_NEW_TOKENS
            return orig(**kw)

        backend.model.generate = generate
    backend.answer(_segments(1, rng))  # warm-up
    for b in batches:
        clips = _segments(b, rng)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            backend.answer(clips)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"batch": b, "batch_s": round(med, 4), "per_segment_s": round(med / b, 4),
                     "segments_per_s": round(b / med, 2), "repeats": repeats})
    return rows


def bench_clip(model: str, pretrained: str | None, n_frames: int, device: str) -> dict:
    enc = load_clip(ClipConfig(model=model, pretrained=pretrained, device=device, batch_size=64))
    frames = np.random.default_rng(0).integers(0, 256, size=(n_frames, 240, 320, 3), dtype=np.uint8)
    enc.encode_images(frames[:8])
    t0 = time.perf_counter()
    enc.encode_images(frames)
    dt = time.perf_counter() - t0
    return {"model": model, "frames": n_frames, "seconds": round(dt, 3), "frames_per_s": round(n_frames / dt, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vlm-batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=448, help="tiny model frame size (448: 256 tokens/frame)")
    ap.add_argument("--max-new-tokens", type=int, default=FIXED_NEW_TOKENS)
    ap.add_argument("--internvl2-8b", action="store_true", help="InternVL2-8B-shaped random model")
    ap.add_argument("--meta", action="store_true", help="with --internvl2-8b: build on the meta device only")
    ap.add_argument("--clip-frames", type=int, default=256)
    ap.add_argument("--clip-model", default=None, help="default: the tiny CLIP; e.g. ViT-B-16 (random weights)")
    ap.add_argument("--skip-clip", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    report: dict[str, object] = {"device": args.device, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.internvl2_8b:
            model, tiny = build_8b_shaped(args.device, args.meta, work)
            n_params = sum(p.numel() for p in model.parameters())
            report["internvl2_8b_params"] = n_params
            if args.meta:
                report["meta_smoke"] = "ok"
                print(json.dumps(report, indent=2))
                return 0
            from corevad.models.transformers_backend import TransformersBackend

            cfg = VLMConfig(model=str(tiny), device=args.device, max_new_tokens=FIXED_NEW_TOKENS,
                            batch_size=max(args.vlm_batches))
            backend = TransformersBackend(cfg)
            backend.model = model
            backend.dtype = next(model.parameters()).dtype
            report["vlm"] = bench_vlm(backend, args.vlm_batches, args.repeats, fixed_tokens=True)
            if args.device.startswith("cuda"):
                report["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        else:
            path = build_tiny_internvl(work / "tiny", image_size=args.image_size)
            from corevad.models import load_vlm

            backend = load_vlm(VLMConfig(model=str(path), device=args.device, max_new_tokens=args.max_new_tokens,
                                         batch_size=max(args.vlm_batches)))
            report["vlm_model"] = f"tiny InternVL ({args.image_size} px, {(args.image_size // 14) ** 2 // 4} tok/frame)"
            report["vlm"] = bench_vlm(backend, args.vlm_batches, args.repeats, fixed_tokens=True)
        if not args.skip_clip:
            name = args.clip_model or register_tiny_clip(work / "clip")
            report["clip"] = bench_clip(name, None, args.clip_frames, args.device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"VLM transformers backend ({report.get('vlm_model', 'InternVL2-8B-shaped')}, "
                        f"{args.device}, {FIXED_NEW_TOKENS} new tokens)")
        for col in ("batch", "batch s", "s / segment", "segments / s"):
            t.add_column(col, justify="right")
        for r in report["vlm"]:  # type: ignore[union-attr]
            t.add_row(str(r["batch"]), f"{r['batch_s']:.3f}", f"{r['per_segment_s']:.3f}", f"{r['segments_per_s']:.2f}")
        console = Console()
        console.print(t)
        if "clip" in report:
            c = report["clip"]
            console.print(f"CLIP {c['model']}: {c['frames']} frames (320x240) in {c['seconds']} s = "  # type: ignore[index]
                          f"{c['frames_per_s']} frames/s")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
