import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from corevad.benchmarks import concat_gt, load_benchmark, load_responses
from corevad.cli import main
from corevad.evaluate import evaluate
from corevad.params import CausalParams, OfflineParams
from corevad.pipeline import score_causal
from corevad.prompt import parse_answer

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def ucf(shared_data):
    d = shared_data / "ucf_crime"
    return (d / "test_annotations.tsv", d / "VLM_responses_LRC_ucf.json",
            load_benchmark("ucf-crime", d / "test_annotations.tsv"), load_responses(d / "VLM_responses_LRC_ucf.json"))


def test_eval_json_on_real_ucf_crime(ucf, capsys):
    ann, resp, videos, responses = ucf
    assert main(["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(resp),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 1_111_808 and out["anomalous_frames"] == 84_182
    assert out["segments"] == 37_188 and out["unparsed"] == 0 and out["used_features"] is False
    assert len(out["per_class"]) == 13
    # the text-only protocol recomputed independently of corevad's pipeline
    kernel = np.exp(-np.linspace(-5, 4, 9) ** 2 / 50.0)
    kernel /= kernel.sum()
    preds = []
    for v in videos:
        lab = np.array([a.lower().startswith("anomalous scenes") for a in responses[v.name]], dtype=float)
        y = np.repeat(np.convolve(lab, kernel, mode="same"), 30)[:v.frames]
        t = np.arange(v.frames)
        preds.append(y * np.exp(-0.5 * ((t - v.frames // 2) / int(v.frames * 0.5)) ** 2))
    assert out["auc"] == pytest.approx(roc_auc_score(concat_gt(videos), np.concatenate(preds)), abs=1e-9)
    assert 0.75 < out["auc"] < 0.9


def test_causal_mode_matches_the_core(ucf, capsys):
    ann, resp, videos, responses = ucf
    assert main(["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(resp),
                 "--mode", "causal", "--smooth-length", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = CausalParams(smooth_length=4)
    s = np.concatenate([score_causal(np.array([parse_answer(a).label for a in responses[v.name]]), v.frames,
                                     p).frame_scores for v in videos])
    assert out["auc"] == pytest.approx(roc_auc_score(concat_gt(videos), s), abs=1e-12)
    assert out["params"]["causal"]["smooth_length"] == 4


def test_label_probabilities_are_scored_instead_of_labels(ucf, tmp_path, capsys):
    """`--probabilities` (corevad generate's sidecar): P(Anomalous) where known, the 0/1 label where null."""
    ann, resp, videos, responses = ucf
    rng = np.random.default_rng(3)
    probs: dict[str, list[float | None]] = {}
    for v in videos:
        lab = np.array([parse_answer(a).label for a in responses[v.name]], dtype=float)
        p = np.clip(0.7 * lab + 0.3 * rng.random(lab.size), 0, 1)  # a soft, label-consistent probability
        probs[v.name] = [None if i % 7 == 0 else float(x) for i, x in enumerate(p)]  # some unknown
    f = tmp_path / "p.json"
    f.write_text(json.dumps(probs))
    args = ["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(resp),
            "--mode", "causal", "--json"]
    assert main([*args, "--probabilities", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    p = CausalParams()
    expected = []
    for v in videos:
        lab = [parse_answer(a).label for a in responses[v.name]]
        vals = np.array([lab[i] if x is None else x for i, x in enumerate(probs[v.name])])
        expected.append(score_causal(vals, v.frames, p).frame_scores)
    assert out["auc"] == pytest.approx(roc_auc_score(concat_gt(videos), np.concatenate(expected)), abs=1e-12)
    assert out["probability_segments"] == sum(x is not None for v in probs.values() for x in v)
    assert main(args) == 0
    labels_only = json.loads(capsys.readouterr().out)
    assert labels_only["probability_segments"] == 0 and labels_only["auc"] != pytest.approx(out["auc"], abs=1e-4)

    name = videos[0].name
    for bad, needle in (({**probs, name: probs[name][:-1]}, f"{name!r}: {len(probs[name]) - 1} probabilities"),
                        ({**probs, name: [1.5] * len(probs[name])}, f"video {name!r} segment 0"),
                        ({k: w for k, w in probs.items() if k != name}, f"{name!r} is missing from the probabilities"),
                        ([0.5], "expected a JSON object")):
        f.write_text(json.dumps(bad))
        assert main([*args, "--probabilities", str(f)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert needle in err, err


def test_garbled_answers_are_counted_not_fatal(ucf):
    _, _, videos, responses = ucf
    sub = videos[:3] + [v for v in videos if not v.is_anomalous][:3]
    garbled = {k: list(v) for k, v in responses.items()}
    garbled[sub[0].name][:5] = ["```\n???\n```"] * 5
    res = evaluate(sub, garbled, offline=OfflineParams())
    assert res.unparsed == 5 and res.videos == 6


def test_table_output_and_plots(ucf, tmp_path, capsys):
    ann, resp, videos, _ = ucf
    plots = tmp_path / "plots"
    assert main(["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(resp),
                 "--plots", str(plots), "--plot-videos", videos[0].name, videos[-1].name]) == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "Shoplifting" in text and "text-only" in text
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == sorted([f"{videos[0].name}.png", f"{videos[-1].name}.png"])
    assert (plots / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_exit_with_clear_errors(ucf, tmp_path, capsys):
    ann, resp, _, responses = ucf
    short = dict(responses)
    short["Abuse028_x264"] = short["Abuse028_x264"][:-1]
    f = tmp_path / "r.json"
    f.write_text(json.dumps(short))
    args = ["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(f), "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Abuse028_x264" in err and "47 responses" in err and "48" in err
    assert main([*args, "--skip-bad"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["videos"] == 289 and out["skipped"] == [{"video": "Abuse028_x264", "expected": 48, "got": 47}]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("offline:\n  tua: 0.1\n")
    assert main(["eval", "--dataset", "ucf-crime", "--annotations", str(ann), "--responses", str(resp),
                 "--config", str(cfg)]) == 2
    assert "tua" in capsys.readouterr().err


def test_xd_violence_evaluation_path(shared_data, tmp_path, capsys):
    """No recorded XD answers exist: answers derived from GT (with two garbled ones) exercise the XD path."""
    ann = shared_data / "xd_violence" / "xd_annotations.json"
    videos = load_benchmark("xd-violence", ann)[:40]
    responses = {}
    for v in videos:
        gt = v.gt
        responses[v.name] = ["Anomalous scenes. People fight." if gt[s:s + 30].mean() > 0.5 else
                             "Normal scenes. A quiet scene." for s in range(0, v.frames, 30)]
    responses[videos[0].name][0] = "no idea"
    responses[videos[1].name][0] = ""
    f = tmp_path / "xd.json"
    f.write_text(json.dumps({k + "#": v for k, v in responses.items()}))  # '#' stripped like the authors
    sub = tmp_path / "xd_sub.json"
    raw = json.loads(ann.read_text())[:40]
    sub.write_text(json.dumps(raw))
    assert main(["eval", "--dataset", "xd-violence", "--annotations", str(sub), "--responses", str(f),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["videos"] == 40 and out["unparsed"] == 2
    assert out["ap"] > 0.6 and out["auc"] > 0.8
    assert out["frames"] == sum(v.frames for v in videos)
