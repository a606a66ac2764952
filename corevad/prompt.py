"""The VLM instruction and the parsing of its two-line answer into a Verdict."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from .types import Verdict

DATA_PLACEHOLDER = "$Data"

# Line 1 of the answer contract. "Abnormal" is accepted as a synonym some models drift to.
_VERDICT_RE = re.compile(
    r"^[\s>*_#`\"'(\[\-]*(?:\d[.)]\s*)?(?:line\s*1\s*[:.)-]\s*)?[*_\"']*"
    r"(?P<word>anomalous|abnormal|normal)\s+scenes?\b[\s*_\"'.!:;,]*",
    re.IGNORECASE,
)
# The common, clean one-line form ("Normal scenes. A man walks.") skips the general parser.
_FAST_RE = re.compile(r"(anomalous|normal) scenes\.[ \t]*([^\n`]*)\Z", re.IGNORECASE)
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_LEAD_RE = re.compile(r"^[\s>*_#`\"'\-]*(?:\d[.)]\s*)?(?:line\s*2\s*[:.)-]\s*)?")


def default_prompt_path() -> Path:
    """configs/prompt.txt in a source checkout; the packaged copy otherwise."""
    repo_copy = Path(__file__).resolve().parent.parent / "configs" / "prompt.txt"
    if repo_copy.is_file():
        return repo_copy
    return Path(str(resources.files("corevad") / "prompt.txt"))


def load_prompt(path: str | Path | None = None) -> str:
    """Read a prompt template; it must contain the $Data placeholder where the frames go."""
    p = Path(path) if path is not None else default_prompt_path()
    text = p.read_text(encoding="utf-8")
    if DATA_PLACEHOLDER not in text:
        raise ValueError(f"prompt file {p} has no {DATA_PLACEHOLDER} placeholder for the frames")
    return text


def render_prompt(template: str, n_frames: int, image_token: str = "<image>") -> str:
    """Replace $Data with one "FrameK: <image>" line per frame, as the authors do for InternVL."""
    frames = "".join(f"Frame{i + 1}: {image_token}\n" for i in range(n_frames))
    return template.replace(DATA_PLACEHOLDER, frames)


def _clean_line(line: str) -> str:
    return re.sub(r"\s+", " ", line).strip().strip("*_`\"'").strip()


def parse_answer(raw: str | None) -> Verdict:
    """Parse a VLM answer. Never raises: an unreadable answer is label 0 with parsed=False.

    Tolerates code fences, case, extra whitespace, markdown emphasis, text before or after the two
    lines, a missing second line, and the one-line form "Normal scenes. <description>".
    """
    text = raw or ""
    fast = _FAST_RE.match(text.strip())
    if fast and "  " not in fast.group(2):
        label = 0 if fast.group(1).lower() == "normal" else 1
        return Verdict(label=label, description=fast.group(2).strip(), raw=text, parsed=True)
    lines = [ln for ln in text.replace("\r", "\n").split("\n") if ln.strip() and not _FENCE_RE.match(ln)]
    for k, line in enumerate(lines):
        m = _VERDICT_RE.match(line)
        if not m:
            continue
        label = 0 if m.group("word").lower() == "normal" else 1
        rest = _clean_line(line[m.end():])
        if not rest:
            for nxt in lines[k + 1:]:
                if _VERDICT_RE.match(nxt):
                    break
                rest = _clean_line(_LEAD_RE.sub("", nxt, count=1))
                if rest:
                    break
        return Verdict(label=label, description=rest, raw=text, parsed=True)
    return Verdict(label=0, description=_clean_line(" ".join(lines)), raw=text, parsed=False)


def parse_answers(raws: list[str]) -> tuple[list[Verdict], int]:
    """Parse many answers; also return how many could not be parsed."""
    verdicts = [parse_answer(r) for r in raws]
    return verdicts, sum(not v.parsed for v in verdicts)
