"""The VLM instruction (with a camera's scene context), the parsing of its two-line answer into a Verdict, and
the label's probability."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .files import KIB, InputFileError, read_text_checked
from .paths import data_file
from .types import Verdict

DATA_PLACEHOLDER = "$Data"

# Line 1 of the answer contract. "Abnormal" is accepted as a synonym some models drift to; a label such as
# "Answer:" or "**Verdict:**" may precede it.
_VERDICT_RE = re.compile(
    r"^[\s>*_#`\"'(\[\-]*(?:\d[.)]\s*)?"
    r"(?:(?:line\s*1|answer|verdict|label|result|classification|output|response|assessment|final answer)"
    r"[\s*_]*[:.)\-][\s*_\"']*)?[*_\"']*"
    r"(?P<word>anomalous|abnormal|normal)\s+scenes?\b(?P<after>[\s*_\"'.!:;,]*)",
    re.IGNORECASE,
)
# "Anomalous scenes were not observed", "Anomalous scenes: none", "Anomalous scenes? No": the words of the
# contract, negated. Only after ':', '?', a dash or a verb, so "Anomalous scenes. No one helps" stays anomalous.
_NEGATED_RE = re.compile(
    r"^[\s*_\"']*(?:(?:[:?\-\u2013\u2014]|\b(?:were|are|was|is|have\s+been|has\s+been))[\s*_\"']*"
    r"(?:not|no|none|never|nothing)\b|(?:not|never)\b)",
    re.IGNORECASE,
)
_NO_ANOMALY_RE = re.compile(r"^[\W_]*(?:there\s+(?:are|were)\s+)?no\s+(?:anomalous|abnormal)\s+scenes?\b", re.I)
# The common, clean one-line form ("Normal scenes. A man walks.") skips the general parser.
_FAST_RE = re.compile(r"(anomalous|normal) scenes\.[ \t]*([^\n`<{]*)\Z", re.IGNORECASE)
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_LEAD_RE = re.compile(r"^[\s>*_#`\"'\-]*(?:\d[.)]\s*)?(?:(?:line\s*2|description)\s*[:.)-]\s*)?")
_INVISIBLE_RE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad]")
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]{0,10}(?:\s[^<>]{0,80})?/?>")
_LABEL_KEYS = ("label", "verdict", "answer", "result", "classification", "line1", "line_1")
_DESC_KEYS = ("description", "reason", "explanation", "line2", "line_2", "details")


def _from_json(text: str) -> str | None:
    """{"label": "Anomalous scenes.", "description": "..."} (optionally fenced) -> the two-line form."""
    body = "\n".join(ln for ln in text.strip().splitlines() if not _FENCE_RE.match(ln)).strip()
    if not body.startswith("{") or len(body) > 20_000:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    lower = {str(k).lower(): v for k, v in data.items() if isinstance(v, str)}
    label = next((lower[k] for k in _LABEL_KEYS if k in lower), None)
    if label is None:
        return None
    if label.strip().lower() in ("anomalous", "abnormal", "normal"):
        label = f"{label.strip()} scenes."
    desc = next((lower[k] for k in _DESC_KEYS if k in lower), "")
    return f"{label}\n{desc}"


def default_prompt_path() -> Path:
    """The shipped prompt, corevad/data/prompt.txt (users give their own with prompt_path / --prompt)."""
    return data_file("corevad", "prompt.txt")


PROMPT_LIMIT = 64 * KIB  # the paper's prompt is under 1 KiB


def load_prompt(path: str | Path | None = None) -> str:
    """Read a prompt template (size-checked UTF-8 text); it must contain the $Data placeholder."""
    p = Path(path) if path is not None else default_prompt_path()
    text = read_text_checked(p, limit=PROMPT_LIMIT, what="prompt file")
    if DATA_PLACEHOLDER not in text:
        raise InputFileError(f"prompt file {p} has no {DATA_PLACEHOLDER} placeholder for the frames")
    return text


def render_prompt(template: str, n_frames: int, image_token: str = "<image>") -> str:
    """Replace $Data with one "FrameK: <image>" line per frame, as the authors do for InternVL."""
    frames = "".join(f"Frame{i + 1}: {image_token}\n" for i in range(n_frames))
    return template.replace(DATA_PLACEHOLDER, frames)


# -- a camera's scene context ---------------------------------------------------------------------------------
# Per camera, a few sentences of what is normal and what matters at its place ("a loading dock: forklifts and
# people carrying boxes are normal at any hour"). It joins the prompt in one place, compose_prompt.
CONTEXT_PLACEHOLDER = "$Context"
# A few sentences; the bound keeps the prompt's text a small part of its ~2,100 image tokens (8 x 256) and keeps
# what the model reads about the scene from drowning the task itself.
CONTEXT_MAX_CHARS = 600
CONTEXT_HEADING = "About this camera (what is normal and what matters here):"
# '$' would be read as a placeholder ($Data renders frames); '<' and '>' as a tokenizer's special tokens
# (<image>, <IMG_CONTEXT>), which would give the model image slots without images.
_CONTEXT_RESERVED = "$<>"


def check_context(text: str) -> str | None:
    """A camera's scene context, stripped (None when empty); ValueError saying what is wrong: longer than
    CONTEXT_MAX_CHARS, a control or invisible formatting character (only line breaks are allowed), or one of
    the reserved characters $ < >."""
    text = text.strip()
    if not text:
        return None
    if len(text) > CONTEXT_MAX_CHARS:
        raise ValueError(f"is {len(text)} characters; at most {CONTEXT_MAX_CHARS} (a few sentences on what is "
                         "normal and what matters at this place)")
    for i, ch in enumerate(text):
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            raise ValueError(f"holds the control character U+{ord(ch):04X} at position {i} (only line breaks "
                             "are allowed)")
        if ch in _CONTEXT_RESERVED:
            raise ValueError(f"holds {ch!r} at position {i}: $ < > are reserved for the prompt's placeholders "
                             "and the model's special tokens")
    return text


def compose_prompt(template: str, context: str | None) -> str:
    """The prompt template with a camera's scene context: the one place context joins the prompt.

    No context (None or empty): the template unchanged, byte for byte (the paper's prompt stays the default).
    A template that holds $Context gets the context paragraph there (and nothing there without context).
    Otherwise the paragraph (CONTEXT_HEADING, then the context) goes right after the paragraph that holds
    $Data: in the shipped prompt, after the task and before the answer format, which stays last. The context
    must have passed check_context (ValueError otherwise)."""
    if context is not None and context.strip():
        checked = check_context(context)
        block = f"{CONTEXT_HEADING}\n{checked}"
    else:
        block = None
    if CONTEXT_PLACEHOLDER in template:
        return template.replace(CONTEXT_PLACEHOLDER, block or "")
    if block is None:
        return template
    end = template.find("\n\n", max(0, template.find(DATA_PLACEHOLDER)))
    if end < 0:
        return f"{template.rstrip()}\n\n{block}\n"
    return f"{template[:end + 2]}{block}\n\n{template[end + 2:]}"


def camera_prompt(template: str, context: str | None, n_frames: int, image_token: str = "<image>") -> str:
    """The text the model reads for one segment of a camera: compose_prompt, then render_prompt."""
    return render_prompt(compose_prompt(template, context), n_frames, image_token=image_token)


def _clean_line(line: str) -> str:
    return re.sub(r"\s+", " ", line).strip().strip("*_`\"'").strip()


def parse_answer(raw: str | None) -> Verdict:
    """Parse a VLM answer. Never raises: an unreadable answer is label 0 with parsed=False.

    Tolerates code fences, case, extra whitespace, markdown emphasis, a label before the verdict
    ("Answer:", "**Verdict:**"), HTML tags, a JSON object, invisible characters, text before or after the
    two lines, a missing second line, and the one-line form "Normal scenes. <description>". A negated
    verdict ("Anomalous scenes were not observed", "Anomalous scenes: none") reads as normal.
    """
    raw = raw or ""
    # Invisible characters (a BOM, zero-width spaces) and HTML tags around the words are not content.
    text = _TAG_RE.sub("", _INVISIBLE_RE.sub("", raw))
    text = _from_json(text) or text
    fast = _FAST_RE.match(text.strip())
    if fast and "  " not in fast.group(2):
        label = 0 if fast.group(1).lower() == "normal" else 1
        return Verdict(label=label, description=fast.group(2).strip(), raw=raw, parsed=True)
    lines = [ln for ln in text.replace("\r", "\n").split("\n") if ln.strip() and not _FENCE_RE.match(ln)]
    negated: Verdict | None = None
    for k, line in enumerate(lines):
        m = _VERDICT_RE.match(line)
        if not m:
            if negated is None and _NO_ANOMALY_RE.match(line):
                negated = Verdict(label=0, description=_clean_line(line), raw=raw, parsed=True)
            continue
        label = 0 if m.group("word").lower() == "normal" else 1
        if label == 1 and _NEGATED_RE.match(line[m.start("after"):]):
            # Negated: read as "no anomaly", unless a later line gives an explicit verdict.
            negated = negated or Verdict(label=0, description=_clean_line(line), raw=raw, parsed=True)
            continue
        rest = _clean_line(line[m.end():])
        if not rest:
            for nxt in lines[k + 1:]:
                if _VERDICT_RE.match(nxt):
                    break
                rest = _clean_line(_LEAD_RE.sub("", nxt, count=1))
                if rest:
                    break
        return Verdict(label=label, description=rest, raw=raw, parsed=True)
    if negated is not None:
        return negated
    return Verdict(label=0, description=_clean_line(" ".join(lines)), raw=raw, parsed=False)


def parse_answers(raws: list[str]) -> tuple[list[Verdict], int]:
    """Parse many answers; also return how many could not be parsed."""
    verdicts = [parse_answer(r) for r in raws]
    return verdicts, sum(not v.parsed for v in verdicts)


# -- the label's probability -------------------------------------------------------------------------------
# The answer's first token decides the verdict ("Anomalous scenes." / "Normal scenes."). A token counts for a
# label when its text (trimmed, case-folded, at least 2 characters so "A" of "A man..." does not count) is a
# prefix of the label word or starts with it: "An", "Anom", "Anomalous", " Normal", "Normal scenes".
LABEL_WORDS = ("anomalous", "normal")


def label_of_token(token: str) -> int | None:
    """1 (Anomalous), 0 (Normal) or None: which label a first answer token begins."""
    t = token.strip().lower()
    if len(t) < 2:
        return None
    for label, word in ((1, LABEL_WORDS[0]), (0, LABEL_WORDS[1])):
        if word.startswith(t) or t.startswith(word):
            return label
    return None


def p_anomalous(first_token_logprobs: Iterable[tuple[str, float]]) -> float | None:
    """P(Anomalous) / (P(Anomalous) + P(Normal)) from the first answer token's candidates (text, log prob).

    Candidates of the same label add up; a label absent from the candidates counts as probability 0 (an
    OpenAI server's top_logprobs list is cut at k). None when neither label is among them: no probability,
    which is not 0."""
    mass = [0.0, 0.0]
    seen = False
    for token, logprob in first_token_logprobs:
        label = label_of_token(token)
        if label is None or not math.isfinite(logprob):
            continue
        mass[label] += math.exp(logprob)
        seen = True
    total = mass[0] + mass[1]
    if not seen or total <= 0.0:
        return None
    return mass[1] / total


# -- verdict first, description on demand (VLMConfig.describe) -----------------------------------------------
# The answer text of a segment whose description was not generated: its verdict's own line, which every
# consumer already reads (parse_answer gives the label and an empty description).
VERDICT_LINES = ("Normal scenes.", "Anomalous scenes.")


def needs_description(first_token: str, p: float | None, *, describe_above: float) -> bool:
    """Whether a segment whose answer begins with first_token gets its full answer (describe "on_demand").

    Only a first token that begins "Normal" with p_anomalous (when known) below describe_above stops after
    the verdict: an anomalous verdict, and a first token that is neither label (its verdict is not known
    from one token), are answered in full, so stopping early never turns a verdict into "Normal"."""
    if label_of_token(first_token) != 0:
        return True
    return p is not None and p >= describe_above


def cut_answer(text: str, limit: int) -> tuple[str, bool]:
    """The answer bounded to limit characters (a model or server that does not stop must not flood the sinks);
    True when it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True
