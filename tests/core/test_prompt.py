import pytest

from corevad.files import InputFileError
from corevad.prompt import load_prompt, parse_answer, parse_answers, render_prompt


@pytest.mark.parametrize(
    ("raw", "label", "desc"),
    [
        ("Anomalous scenes.\nA man punches another man.", 1, "A man punches another man."),
        ("Normal scenes.\nPeople walk in a mall.", 0, "People walk in a mall."),
        ("```\nAnomalous scenes.\nA car crashes into a pole.\n```", 1, "A car crashes into a pole."),
        ("  normal SCENES.  \n\n   Two people   talk.  ", 0, "Two people talk."),
        ("Anomalous scenes.", 1, ""),
        ("Here is my answer:\n```\nNormal scenes.\nA quiet street.\n```\nHope this helps!", 0, "A quiet street."),
        ("Normal scenes. A white van is parked.", 0, "A white van is parked."),
        ("**Anomalous scenes.**\n2) A fire burns in a store.", 1, "A fire burns in a store."),
        ("1) Abnormal scenes.\n2) Someone breaks a window.", 1, "Someone breaks a window."),
    ],
)
def test_parse_accepts_contract_variants(raw, label, desc):
    v = parse_answer(raw)
    assert v.parsed
    assert (v.label, v.description) == (label, desc)
    assert v.raw == raw


@pytest.mark.parametrize("raw", ["", None, "I cannot tell.", "The scene is abnormal? maybe", "Scenes are normal."])
def test_unparseable_answer_scores_zero_and_is_flagged(raw):
    v = parse_answer(raw)
    assert not v.parsed and v.label == 0


def test_normal_is_not_matched_inside_abnormal_words():
    assert parse_answer("Paranormal scenes.\nGhosts.").parsed is False


def test_parse_answers_counts_unparsed():
    verdicts, unparsed = parse_answers(["Normal scenes.\nx", "garbage", "Anomalous scenes. y", "???"])
    assert [v.label for v in verdicts] == [0, 0, 1, 0]
    assert unparsed == 2


def test_one_line_text_form_round_trips():
    v = parse_answer("```\nAnomalous scenes.\nA man runs.\n```")
    assert v.text == "Anomalous scenes. A man runs."
    assert parse_answer(v.text).label == v.label == 1  # the one-line form parses back to the same verdict
    assert parse_answer(v.text).description == "A man runs."


def test_default_prompt_renders_eight_frames(tmp_path):
    text = render_prompt(load_prompt(), 8)
    assert "$Data" not in text
    assert text.count("<image>") == 8 and "Frame8: <image>" in text
    assert "Anomalous scenes." in text and "Normal scenes." in text
    bad = tmp_path / "p.txt"
    bad.write_text("no placeholder")
    with pytest.raises(InputFileError, match=r"\$Data"):
        load_prompt(bad)


@pytest.mark.parametrize(("raw", "label", "desc"), [
    ("Anomalous scenes were not observed.\nNormal scenes.", 0, ""),
    ("Anomalous scenes: none.", 0, "Anomalous scenes: none."),
    ("Anomalous scenes? No.", 0, "Anomalous scenes? No."),
    ("No anomalous scenes. A quiet parking lot.", 0, "No anomalous scenes. A quiet parking lot."),
    ("Answer: Anomalous scenes.", 1, ""),
    ("**Verdict:** Anomalous scenes.\nA man climbs the fence.", 1, "A man climbs the fence."),
    ('{"label": "Anomalous scenes.", "description": "Two cars collide."}', 1, "Two cars collide."),
    ('```json\n{"verdict": "normal", "reason": "People queue."}\n```', 0, "People queue."),
    ("<b>Anomalous scenes.</b>", 1, ""),
    ("\ufeffAnomalous scenes.\nSmoke fills the room.", 1, "Smoke fills the room."),
    ("\u200bAnomalous scenes. A man falls.", 1, "A man falls."),
    # Not negations: the verdict ends with a full stop and the description starts with "No"/"not".
    ("Anomalous scenes. No one helps the injured man.", 1, "No one helps the injured man."),
    ("Anomalous scenes.\nNot a normal day: a fire.", 1, "Not a normal day: a fire."),
])
def test_red_team_answers_read_as_meant(raw: str, label: int, desc: str) -> None:
    v = parse_answer(raw)
    assert (v.parsed, v.label, v.description) == (True, label, desc), v
    assert v.raw == raw
