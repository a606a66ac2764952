"""A cold text-context replay embeds the answers' descriptions up front, in large batches, with progress;
a warm one embeds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from corevad.models.text import CachedTextEncoder


class CountingEncoder:
    """A TextEncoder double: deterministic unit rows; records every batch it was asked to embed."""

    name = "counting"
    dim = 4

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        rows = np.array([[len(t), t.count("a"), 1.0, k] for k, t in enumerate(texts)], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_warm_embeds_only_missing_texts_in_chunks_and_reports_progress() -> None:
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner)
    enc.encode_texts(["cached"])
    texts = ["a", "b", "cached", "a", "c", "d", "e"]
    assert enc.missing(texts) == ["a", "b", "c", "d", "e"]  # distinct, first-seen order, cache left out
    seen: list[tuple[int, int]] = []
    assert enc.warm(texts, chunk=2, progress=lambda done, total: seen.append((done, total))) == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert inner.batches[1:] == [["a", "b"], ["c", "d"], ["e"]]
    calls = len(inner.batches)
    assert enc.warm(texts, progress=lambda *_: seen.append((-1, -1))) == 0  # all cached: no model call, no tick
    assert len(inner.batches) == calls and seen[-1] == (5, 5)
    with pytest.raises(ValueError, match="chunk"):
        enc.warm(texts, chunk=0)


@pytest.mark.slow
@pytest.mark.data
def test_cold_text_replay_says_it_embeds_and_a_warm_one_does_not(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "ucf_crime"
    cmd = [sys.executable, "-m", "corevad_stream.cli", "replay", "--dataset", "ucf-crime", "--annotations",
           str(d / "test_annotations.tsv"), "--responses", str(d / "VLM_responses_LRC_ucf.json"), "--limit", "3",
           "-c", "configs/replay_ucf_text.yaml", "--json"]
    env = {**os.environ, "COREVAD_CACHE": str(tmp_path / "cache")}
    cold = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert "not in the sentence-embedding cache: embedding them once" in cold.stderr
    assert list((tmp_path / "cache" / "text-embeddings").glob("*.npz"))  # saved for next time
    warm = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "embedding them once" not in warm.stderr
    # The same scores either way: the cache holds exactly what the worker would have embedded.
    assert json.loads(warm.stdout)["online"] == json.loads(cold.stdout)["online"]
