"""Crop (+mask) cost per segment: what zones add to preparing a segment's 8 sampled frames for the model.

Decodes 8 frames of a generated H.264 clip (ffmpeg's testsrc2) at each size with the runtime's decoder
(cv2's FFmpeg backend), then times the segmenter's per-frame step, the crop to the zones' box (and mask)
followed by the resize to the model's square input and RGB, for 8 frames, against the same step without
zones. The zones: a door-like quadrilateral and a lane triangle, covering about half of the frame's area.
Reports medians over --segments repetitions, in ms per 8-frame segment, and the one-time cost of resolving
the layout (computing the mask) when a camera's first frame of a size arrives.

    .venv/bin/python tools/bench_zones.py [--segments 200] [--size 448] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from corevad_stream.config import CameraConfig
from corevad_stream.segmenter import prepare_frame_into
from corevad_stream.testing import make_test_video
from corevad_stream.zones import CameraZones, resolve_zones

SIZES = [(640, 480), (1920, 1080)]
FRAMES = 8


def zones_config(mask: bool) -> CameraConfig:
    return CameraConfig(name="bench", url="bench.mp4", zones=[
        {"name": "door", "points": [[0.10, 0.15], [0.45, 0.10], [0.50, 0.90], [0.12, 0.95]], "mask_outside": mask},
        {"name": "lane", "points": [[0.40, 0.60], [0.85, 0.30], [0.80, 0.95]], "mask_outside": mask},
    ])


def decode(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames: list[np.ndarray] = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"{path}: only {len(frames)} frames decoded, {n} needed")
        frames.append(frame)
    cap.release()
    return frames


def time_cases(frames: list[np.ndarray], cases: dict[str, Callable[[np.ndarray, int], object]],
               segments: int) -> dict[str, float]:
    """Median ms per segment of each case, the cases interleaved run by run so a noisy machine's load
    falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(segments + 5):
        for name, step in cases.items():
            t0 = time.perf_counter()
            for k, frame in enumerate(frames):
                step(frame, k)
            if rep >= 5:  # the first runs resolve the layouts and warm the caches
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(frames: list[np.ndarray], size: int, segments: int) -> dict[str, Any]:
    """One frame size's figures: ms per segment of each case, and the one-time layout resolution."""
    h, w = frames[0].shape[:2]
    dst = np.empty((FRAMES, size, size, 3), dtype=np.uint8)
    row: dict[str, Any] = {}
    for label, mask in (("crop", False), ("crop_mask", True)):
        t0 = time.perf_counter()
        layout = resolve_zones("bench", zones_config(mask).zones, w, h)
        row[f"{label}_resolve_once_ms"] = (time.perf_counter() - t0) * 1000
    x0, y0, x1, y1 = layout.box
    row["box"], row["box_share"] = [x0, y0, x1, y1], round((x1 - x0) * (y1 - y0) / (w * h), 3)
    crop = CameraZones("bench", zones_config(False).zones)
    masked = CameraZones("bench", zones_config(True).zones)
    medians = time_cases(frames, {
        "whole_frame": lambda f, k: prepare_frame_into(f, dst[k]),
        "crop": lambda f, k: prepare_frame_into(crop.crop(f), dst[k]),
        "crop_mask": lambda f, k: prepare_frame_into(masked.crop(f), dst[k]),
        "crop_only": lambda f, k: crop.crop(f),
        "crop_mask_only": lambda f, k: masked.crop(f),
    }, segments)
    row.update({f"{name}_ms": round(ms, 3) for name, ms in medians.items()})
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=200, help="Timed segments per case (median reported).")
    ap.add_argument("--size", type=int, default=448, help="The model's square input (448: one InternVL tile).")
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"segments": args.segments, "model_size": args.size, "frames": FRAMES,
                           "cv2_threads": cv2.getNumThreads(), "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            frames = decode(make_test_video(Path(tmp) / f"{w}x{h}.mp4", seconds=1, size=(w, h)), FRAMES)
            row = out["sizes"][f"{w}x{h}"] = measure(frames, args.size, args.segments)
            print(f"{w}x{h}, {FRAMES} frames to {args.size} px, ms per segment: whole frame "
                  f"{row['whole_frame_ms']:.2f}; zones crop {row['crop_ms']:.2f} (the crop itself "
                  f"{row['crop_only_ms']:.3f}); crop + mask "
                  f"{row['crop_mask_ms']:.2f} (the crop + mask itself {row['crop_mask_only_ms']:.2f}); mask "
                  f"resolved once per frame size in {row['crop_mask_resolve_once_ms']:.1f} ms; box {row['box']} "
                  f"({row['box_share']:.0%} of the frame)")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
