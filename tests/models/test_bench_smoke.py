"""tools/bench_models.py can build the InternVL2-8B-shaped model (on the meta device: no memory, no GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_internvl2_8b_shape_builds_on_meta(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_models.py"), "--internvl2-8b", "--meta", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout[out.stdout.index("{"):])
    # InternVL2-8B has about 8.08 B parameters (InternViT-300M + InternLM2.5-7B + MLP projector).
    assert 7.9e9 < report["internvl2_8b_params"] < 8.2e9
    assert report["meta_smoke"] == "ok"


@pytest.mark.slow
def test_bench_gpu_tiny_runs_every_part_on_the_cpu(tmp_path: Path) -> None:
    out_file = tmp_path / "gpu.json"
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_gpu.py"), "--tiny", "--batches", "1", "2", "--repeats", "1",
         "--seconds", "2", "--warmup", "1", "--max-cameras", "2", "--out", str(out_file)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out_file.read_text())
    assert report["card"] == "cpu" and report["answer_tokens"] == 24
    assert [r["batch"] for r in report["sweep"]] == [1, 2] and all(r["segments_per_s"] > 0 for r in report["sweep"])
    split = report["split"]
    assert all(split[k] > 0 for k in ("processor_s", "vision_s", "prefill_1_token_s", "answer_24_tokens_s"))
    assert split["answer_24_tokens_s"] > split["prefill_1_token_s"]  # 24 decode steps cost more than one
    live = report["live"]
    assert 1 <= live["cameras_held"] <= 2 and live["trials"][0]["cameras"] == 1
    best = live["at_capacity"]
    assert best["held"] and best["drops"] == 0 and 0 < best["latency_p50_s"] <= best["latency_p99_s"]
    assert report["live_over_generate_only"] > 0


def test_bench_gpu_wires_the_8b_shaped_model_like_the_tiny_one(tmp_path: Path, tiny_internvl_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path (a model object swapped into the backend) checked on the CPU with the tiny weights, so a
    scarce GPU run does not find a wiring bug."""
    import numpy as np
    from transformers import InternVLForConditionalGeneration

    sys.path.insert(0, str(REPO / "tools"))
    import bench_gpu

    import corevad.models.tiny as tiny

    built: list[str] = []

    def small_8b_shape(device: str, meta: bool, workdir: Path) -> tuple[object, Path]:
        built.append(device)
        return InternVLForConditionalGeneration.from_pretrained(tiny_internvl_dir).eval(), tiny_internvl_dir

    monkeypatch.setattr(tiny, "build_8b_shaped", small_8b_shape)  # bench_gpu imports it when it builds
    backend, name = bench_gpu.build_backend(False, "cpu", tmp_path, 2)
    try:
        [row] = bench_gpu.sweep(backend, [2], 1, 112)
        split = bench_gpu.split(backend, 2, 112)
        [answer] = backend.answer_scored(bench_gpu._clips(1, 112, np.random.default_rng(0)))
    finally:
        backend.close()
    assert built == ["cpu"] and "8B" in name and row["segments_per_s"] > 0
    assert split["answer_24_tokens_s"] > 0 and answer.p_anomalous is not None
