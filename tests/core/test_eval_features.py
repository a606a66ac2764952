"""The CLIP-refined evaluation path, with features on disk and a deterministic stand-in text encoder."""

import zlib

import numpy as np
import pytest

from corevad.benchmarks import load_benchmark
from corevad.cleaning import lrc_choice
from corevad.errors import FeatureError
from corevad.evaluate import evaluate
from corevad.features import load_segment_features
from corevad.params import OfflineParams
from corevad.pipeline import score_offline
from corevad.prompt import parse_answer
from corevad.segments import segment_means

DIM = 8


def text_encoder(texts):
    """Unit vectors seeded by the text: equal texts get equal embeddings."""
    out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts])
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def bench(tmp_path):
    ann = tmp_path / "a.tsv"
    ann.write_text("video\tclass\tframes\tstart1\tend1\tstart2\tend2\n"
                   "V1\tArson\t95\t30\t70\t-1\t-1\nV2\tNormal\t64\t-1\t-1\t-1\t-1\n")
    videos = load_benchmark("ucf-crime", ann)
    rng = np.random.default_rng(0)
    feats = tmp_path / "feats"
    feats.mkdir()
    for v in videos:
        f = rng.normal(size=(v.frames, DIM)).astype(np.float32)
        np.save(feats / f"{v.name}_CLIP_features.npy", f / np.linalg.norm(f, axis=1, keepdims=True))
    responses = {
        "V1": ["Normal scenes. A street.", "Anomalous scenes. Fire in a shop.", "Anomalous scenes. Smoke rises.",
               "Normal scenes. A street."],
        "V2": ["Normal scenes. People walk.", "garbled ###", "Normal scenes. A car passes."],
    }
    return videos, responses, feats


def test_refined_evaluation_uses_features(bench):
    videos, responses, feats = bench
    p = OfflineParams(tau=0.1)
    res = evaluate(videos, responses, offline=p, features_dir=feats, text_encoder=text_encoder, keep_scores=True)
    assert res.used_features and res.unparsed == 1
    v1 = videos[0]
    verdicts = [parse_answer(a) for a in responses["V1"]]
    visual = segment_means(np.load(feats / "V1_CLIP_features.npy"))
    expected = score_offline(np.array([v.label for v in verdicts]), v1.frames, p, visual=visual,
                             description_emb=text_encoder([v.description for v in verdicts]))
    np.testing.assert_allclose(res.scores["V1"].frame_scores, expected.frame_scores)
    text_only = evaluate(videos, responses, offline=p, keep_scores=True)
    assert not text_only.used_features
    assert not np.allclose(text_only.scores["V1"].frame_scores, res.scores["V1"].frame_scores)


def test_apply_lrc_replaces_answers_by_best_aligned_neighbour(bench):
    videos, responses, feats = bench
    p = OfflineParams(position_weighting=False)
    res = evaluate(videos, responses, offline=p, features_dir=feats, text_encoder=text_encoder,
                   apply_lrc=True, keep_scores=True)
    visual = segment_means(np.load(feats / "V1_CLIP_features.npy"))
    choice = lrc_choice(visual @ text_encoder([" ".join(a.split()) for a in responses["V1"]]).T, 1, 1)
    labels = np.array([parse_answer(a).label for a in responses["V1"]])[choice]
    np.testing.assert_allclose(res.scores["V1"].labels, labels)


def test_feature_file_problems_are_named(bench, tmp_path):
    videos, responses, feats = bench
    np.save(feats / "V2_CLIP_features.npy", np.zeros((200, DIM), dtype=np.float32))
    with pytest.raises(FeatureError, match=r"200 frames give 7 segments, the video needs 3"):
        load_segment_features(feats, videos[1].name, 3, 30)
    with pytest.raises(FeatureError, match="no CLIP features for video 'V1'"):
        evaluate(videos, responses, features_dir=tmp_path, text_encoder=text_encoder)


def test_eval_cli_refines_with_the_real_tiny_clip_text_encoder(bench, tmp_path, capsys):
    """`corevad eval --features` loads CLIP through corevad.models (tiny random open_clip here)."""
    import json

    from corevad.cli import main
    from corevad.models import load_clip

    videos, responses, _ = bench
    dim = load_clip(model="tiny", device="cpu").dim
    feats = tmp_path / "tiny_feats"
    feats.mkdir()
    rng = np.random.default_rng(3)
    for v in videos:
        np.save(feats / f"{v.name}_CLIP_features.npy", rng.normal(size=(v.frames, dim)).astype(np.float32))
    ann = tmp_path / "a.tsv"
    resp = tmp_path / "r.json"
    resp.write_text(json.dumps(responses))
    base = ["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(resp), "--json"]
    assert main([*base, "--features", str(feats), "--clip-model", "tiny", "--device", "cpu", "--apply-lrc"]) == 0
    refined = json.loads(capsys.readouterr().out)
    assert refined["used_features"] is True and refined["unparsed"] == 1
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["used_features"] is False
    assert main([*base, "--apply-lrc"]) == 2
    assert "--apply-lrc needs --features" in capsys.readouterr().err
