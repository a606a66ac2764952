"""describe "on_demand" on the tiny InternVL: a verdict for every row, the rest of the answer only where needed,
token for token the one-pass answer (greedy), and a failed description pass costing only its rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corevad.models import Clip, VLMConfig, load_vlm
from corevad.models.transformers_backend import scripted_first_tokens
from corevad.prompt import VERDICT_LINES, label_of_token, parse_answer

LABELS = [0, 1, 0, 1, 1, 0]  # the first answer token each row is made to begin


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    rng = np.random.default_rng(3)
    return [Clip("cam", i, rng.integers(0, 256, size=(4, 40, 40, 3), dtype=np.uint8)) for i in range(len(LABELS))]


def _backend(model_dir: Path, describe: str):
    return load_vlm(VLMConfig(model=str(model_dir), max_new_tokens=10, batch_size=len(LABELS), device="cpu",
                              describe=describe, describe_above=1.0))


def _scripted(backend, clips: list[Clip]):
    prepared = backend.prepare(clips)
    prompt_len = prepared[0][1]["input_ids"].shape[1]
    backend.generate_kwargs["logits_processor"] = scripted_first_tokens(backend, LABELS, prompt_len=prompt_len)
    return prepared


def test_two_phase_equals_one_pass_where_described(tiny_internvl_dir: Path, clips: list[Clip]) -> None:
    full, lazy = _backend(tiny_internvl_dir, "all"), _backend(tiny_internvl_dir, "on_demand")
    one = full.run(_scripted(full, clips))
    two = lazy.run(_scripted(lazy, clips))
    assert len(one) == len(two) == len(LABELS)
    _, label_texts = full.label_tokens()
    for label, a, b in zip(LABELS, one, two, strict=True):
        assert a.p_anomalous == pytest.approx(b.p_anomalous, abs=1e-6)  # same first-token logits
        # The script took hold in the one-pass run: the answer begins with a token of its label.
        assert any(label_of_token(t) == label and a.text.startswith(t.strip()) for t in label_texts), a.text
        if label == 1:  # anomalous: described, the same tokens as in one pass
            assert b.described and b.text == a.text and b.error is None
        else:  # normal: stops after the verdict
            assert not b.described and b.text == VERDICT_LINES[0] and parse_answer(b.text).label == 0
    assert lazy.verdict_rows == 6 and lazy.described_rows == 3


def test_a_failed_description_pass_costs_only_its_rows(tiny_internvl_dir: Path, clips: list[Clip],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = _backend(tiny_internvl_dir, "on_demand")
    prepared = _scripted(lazy, clips)

    def broken(*_a, **_k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(lazy, "_continue", broken)
    out = lazy.run(prepared)
    assert lazy.continuation_failures == 1
    for label, a in zip(LABELS, out, strict=True):
        assert a.error is None
        assert parse_answer(a.text).label == label  # an anomalous verdict stays anomalous, undescribed
        assert not a.described


def test_unknown_first_token_is_described_and_its_failure_is_an_error(tiny_internvl_dir: Path, clips: list[Clip],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Unscripted, the random model's first tokens are mostly neither label: those rows are answered in full
    # (their verdict is not known from one token), and if that fails they carry the error, never "Normal".
    lazy = _backend(tiny_internvl_dir, "on_demand")
    full = _backend(tiny_internvl_dir, "all")
    one = full.answer_scored(clips)
    _, label_texts = full.label_tokens()
    unknown = [i for i, a in enumerate(one)
               if not any(label_of_token(t) is not None and a.text.startswith(t.strip()) for t in label_texts)]
    assert unknown, "the random model should begin some answers with neither label"
    two = lazy.answer_scored(clips)
    assert [two[i].text for i in unknown] == [one[i].text for i in unknown]
    monkeypatch.setattr(lazy, "_continue", lambda *_a, **_k: (_ for _ in ()).throw(RuntimeError("boom")))
    failed = lazy.answer_scored(clips)
    for i in unknown:
        assert failed[i].error and "boom" in failed[i].error and failed[i].text == ""
