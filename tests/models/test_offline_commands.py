"""`corevad extract-features`, `generate` and `lrc` end to end on generated videos with tiny models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corevad.cli import main

pytestmark = pytest.mark.slow

TSV_HEADER = "video\tclass\tframes\tstart1\tend1\tstart2\tend2\n"


def _annotations(path: Path, rows: list[tuple[str, str, int, int, int]]) -> Path:
    path.write_text(TSV_HEADER + "".join(f"{n}\t{c}\t{f}\t{s}\t{e}\t-1\t-1\n" for n, c, f, s, e in rows))
    return path


def _clip_args(name: str) -> list[str]:
    return ["--clip-model", name, "--clip-pretrained", "none", "--device", "cpu", "--clip-batch-size", "16"]


def test_extract_features_resumable_with_bad_video(video_dir: Path, tmp_path: Path, tiny_clip_name: str) -> None:
    out = tmp_path / "feats"
    rc = main(["extract-features", "--videos", str(video_dir), "--out", str(out), *_clip_args(tiny_clip_name)])
    assert rc == 1  # broken.mp4 failed; the rest were written
    shapes = {p.name: np.load(p).shape for p in out.iterdir()}
    assert shapes == {"alpha_CLIP_features.npy": (75, 32), "beta_CLIP_features.npy": (60, 32),
                      "gamma_CLIP_features.npy": (31, 32)}
    feats = np.load(out / "alpha_CLIP_features.npy")
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # Resume: finished files are kept as they are, the bad video is tried again and reported again.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "gamma_CLIP_features.npy").write_bytes(b"torn write")  # a damaged file is redone
    rc = main(["extract-features", "--videos", str(video_dir), "--out", str(out), *_clip_args(tiny_clip_name)])
    assert rc == 1
    assert (out / "alpha_CLIP_features.npy").stat().st_mtime_ns == mtimes["alpha_CLIP_features.npy"]
    assert np.load(out / "gamma_CLIP_features.npy").shape == (31, 32)
    assert not list(out.glob(".*tmp"))


def test_extract_features_reports_and_fixes_frame_counts(
    video_dir: Path, tmp_path: Path, tiny_clip_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = _annotations(tmp_path / "ann.tsv", [("alpha", "Fighting", 78, 10, 40), ("beta", "Normal", 60, -1, -1),
                                             ("missing", "Normal", 30, -1, -1)])
    out = tmp_path / "feats"
    rc = main(["extract-features", "--videos", str(video_dir), "--out", str(out), "--dataset", "ucf-crime",
               "--annotations", str(ann), "--fix-frame-count", *_clip_args(tiny_clip_name)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "missing" in err and "not in the video folder" in err
    assert "alpha: decoded 75 frames but the annotation expects 78" in " ".join(err.split())
    assert np.load(out / "alpha_CLIP_features.npy").shape == (78, 32)  # padded with the last frame
    assert not (out / "gamma_CLIP_features.npy").exists()  # not listed in the annotation


def _generate_args(video_dir: Path, out: Path, model: Path, batch: int = 2) -> list[str]:
    return ["generate", "--videos", str(video_dir), "--out", str(out), "--model", str(model),
            "--device", "cpu", "--max-new-tokens", "8", "--batch-size", str(batch)]


def test_generate_then_lrc_then_eval(
    video_dir: Path, tmp_path: Path, tiny_internvl_dir: Path, tiny_clip_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "responses.json"
    assert main(_generate_args(video_dir, out, tiny_internvl_dir)) == 1  # broken.mp4
    responses = json.loads(out.read_text())
    assert {k: len(v) for k, v in responses.items()} == {"alpha": 3, "beta": 2, "gamma": 2}
    assert all("\n" not in a for v in responses.values() for a in v)
    raw = json.loads((tmp_path / "responses.raw.json").read_text())
    assert {k: len(v) for k, v in raw.items()} == {"alpha": 3, "beta": 2, "gamma": 2}
    assert not (tmp_path / "responses.json.partial.json").exists()
    assert "broken" in capsys.readouterr().err
    # The tiny InternVL's first-step logits give every answer a label probability, written beside.
    probs = json.loads((tmp_path / "responses.p_anomalous.json").read_text())
    assert {k: len(v) for k, v in probs.items()} == {"alpha": 3, "beta": 2, "gamma": 2}
    assert all(isinstance(p, float) and 0.0 < p < 1.0 for v in probs.values() for p in v)

    feats = tmp_path / "feats"
    main(["extract-features", "--videos", str(video_dir), "--out", str(feats), *_clip_args(tiny_clip_name)])
    (feats / "beta_CLIP_features.npy").unlink()  # LRC reports a video without features and goes on
    cleaned_path = tmp_path / "lrc.json"
    rc = main(["lrc", "--responses", str(out), "--features", str(feats), "--out", str(cleaned_path),
               *_clip_args(tiny_clip_name)])
    assert rc == 1
    cleaned = json.loads(cleaned_path.read_text())
    assert set(cleaned) == {"alpha", "gamma"}
    cleaned_p = json.loads((tmp_path / "lrc.p_anomalous.json").read_text())  # the chosen answers' probabilities
    assert set(cleaned_p) == {"alpha", "gamma"}
    for video, answers in cleaned.items():
        for i, a in enumerate(answers):  # each segment takes a neighbour's (or its own) answer, with its p
            near = range(max(0, i - 1), min(len(answers), i + 2))
            assert any(a == responses[video][j] and cleaned_p[video][i] == probs[video][j] for j in near)

    # The lead's eval reads what these commands wrote (UCF TSV with the generated videos).
    ann = _annotations(tmp_path / "ann.tsv", [("alpha", "Fighting", 75, 30, 60), ("gamma", "Normal", 31, -1, -1)])
    capsys.readouterr()
    rc = main(["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(cleaned_path),
               "--features", str(feats), "--json", *_clip_args(tiny_clip_name)[:4]])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["auc"] <= 1.0 and result["used_features"] is True
    # ...and scores the label probabilities instead of the labels when asked.
    rc = main(["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(out), "--mode",
               "causal", "--probabilities", str(tmp_path / "responses.p_anomalous.json"), "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["probability_segments"] == 5  # alpha 3 + gamma 2


# Three generate runs of the tiny VLM (killed, resumed, clean): minutes on a busy 2-core machine.
@pytest.mark.timeout(1800)
def test_generate_killed_mid_video_resumes(tmp_path: Path, tiny_internvl_dir: Path, make_video) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "long.mp4", 30 * 10, seed=4)
    make_video(videos / "short.mp4", 45, seed=5)
    out = tmp_path / "responses.json"
    partial = tmp_path / "responses.json.partial.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "corevad.cli", *_generate_args(videos, out, tiny_internvl_dir, 1)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not partial.exists():
            assert proc.poll() is None, "generate ended before the first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done_before = json.loads(partial.read_text())
    assert done_before["video"] == "long" and 1 <= len(done_before["answers"]) < 10
    assert "long" not in (json.loads(out.read_text()) if out.exists() else {})

    assert main(_generate_args(videos, out, tiny_internvl_dir, 1)) == 0
    resumed = json.loads(out.read_text())
    assert {k: len(v) for k, v in resumed.items()} == {"long": 10, "short": 2}
    assert resumed["long"][: len(done_before["answers"])] == done_before["answers"]
    assert not partial.exists()

    # The resumed result equals an uninterrupted run.
    clean = tmp_path / "clean.json"
    assert main(_generate_args(videos, clean, tiny_internvl_dir, 1)) == 0
    assert json.loads(clean.read_text()) == resumed
    resumed_p = json.loads((tmp_path / "responses.p_anomalous.json").read_text())
    clean_p = json.loads((tmp_path / "clean.p_anomalous.json").read_text())
    assert {k: len(v) for k, v in resumed_p.items()} == {"long": 10, "short": 2}
    for k in clean_p:  # the checkpoint kept the probabilities of the answers before the kill
        assert resumed_p[k] == pytest.approx(clean_p[k], abs=1e-5)
