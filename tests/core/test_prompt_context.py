"""A camera's scene context joins the prompt in one place (compose_prompt); without it the paper's prompt is
byte-identical; bad context text is refused with a reason."""

from __future__ import annotations

import hashlib

import pytest

from corevad.prompt import (
    CONTEXT_HEADING,
    CONTEXT_MAX_CHARS,
    camera_prompt,
    check_context,
    compose_prompt,
    default_prompt_path,
    load_prompt,
    render_prompt,
)

DOCK = "A loading dock: forklifts and people carrying boxes are normal at any hour.\nA fire or a fall matters."


def test_without_context_the_papers_prompt_is_byte_identical() -> None:
    template = load_prompt()
    # The shipped file itself, pinned: a change to the paper's prompt must be a deliberate one.
    assert hashlib.sha256(default_prompt_path().read_bytes()).hexdigest()[:16] == _PAPER_PROMPT_SHA256_16
    for empty in (None, "", "  \n "):
        assert compose_prompt(template, empty) == template
        assert camera_prompt(template, empty, 8) == render_prompt(template, 8)


def test_context_goes_after_the_task_and_before_the_answer_format() -> None:
    template = load_prompt()
    text = camera_prompt(template, DOCK, 8)
    block = f"{CONTEXT_HEADING}\n{DOCK}\n\n"
    assert text.count(block) == 1
    assert text.index("ordinary activity.") < text.index(block) < text.index("Answer with exactly two lines")
    assert text.count("<image>") == 8  # the context adds no image slot
    # Everything else is the paper's prompt, in order: removing the block gives it back.
    assert text.replace(block, "") == render_prompt(template, 8)


def test_a_template_may_place_the_context_itself() -> None:
    template = "Scene notes: $Context\nFrames:\n$Data\nAnswer."
    assert (compose_prompt(template, "A quiet lobby.")
            == f"Scene notes: {CONTEXT_HEADING}\nA quiet lobby.\nFrames:\n$Data\nAnswer.")
    assert compose_prompt(template, None) == "Scene notes: \nFrames:\n$Data\nAnswer."
    # No blank line after $Data: the context becomes the last paragraph.
    assert (compose_prompt("Frames:\n$Data\nAnswer.", "A lobby.")
            == f"Frames:\n$Data\nAnswer.\n\n{CONTEXT_HEADING}\nA lobby.\n")


@pytest.mark.parametrize(("text", "match"), [
    ("x" * (CONTEXT_MAX_CHARS + 1), f"{CONTEXT_MAX_CHARS + 1} characters; at most {CONTEXT_MAX_CHARS}"),
    ("a quiet\x07 lobby", r"control character U\+0007 at position 7"),
    ("tabs\tare control characters", r"U\+0009"),
    ("right-to-left \u202e override", r"U\+202E"),
    ("costs $Data here", r"'\$' at position 6"),
    ("an <image> token", r"'<' at position 3"),
])
def test_bad_context_is_refused_with_the_reason(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_context(text)
    with pytest.raises(ValueError, match=match):  # compose_prompt checks too: no unchecked text reaches a model
        compose_prompt(load_prompt(), text)


def test_context_is_stripped_and_line_breaks_are_kept() -> None:
    assert check_context(f"  {DOCK}\n") == DOCK
    assert check_context(" \n ") is None
    assert check_context("x" * CONTEXT_MAX_CHARS) == "x" * CONTEXT_MAX_CHARS  # the bound itself is allowed


# sha256 of corevad/data/prompt.txt as shipped before scene context existed (the paper's prompt, unchanged).
_PAPER_PROMPT_SHA256_16 = "9d9e8c2ca024c3df"
