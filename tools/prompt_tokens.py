"""How many tokens a camera's scene context adds to a segment's prompt (issue 20, item 1).

    .venv/bin/python tools/prompt_tokens.py            # prints a table; --json for a machine-readable line

Counts, for the paper's prompt with no context, a typical context and one at the length bound
(corevad.prompt.CONTEXT_MAX_CHARS): the whole model input of one 8-frame segment as the in-process backend
builds it (the tiny random InternVL's processor at 448 px: 8 x 256 image tokens + the chat-formatted text), and
the text part alone with two tokenizers:
  - the tiny model's byte-level BPE (~400 tokens, trained on a few sentences by corevad.models.tiny): the one the
    tests run; it splits words it never saw into many pieces, so it over-counts new text;
  - open_clip's CLIP BPE (49,408 tokens, shipped inside open_clip_torch, offline): a real web-text BPE, the closer
    stand-in here for a production tokenizer.
InternVL2-8B's own tokenizer (InternLM2, 92,553 tokens) cannot be downloaded on this machine: no figure from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from corevad.models.tiny import build_tiny_internvl
from corevad.prompt import CONTEXT_MAX_CHARS, camera_prompt, load_prompt

TYPICAL = ("A loading dock: forklifts and people carrying boxes are normal at any hour. "
           "Someone climbing the fence, a fire or a person lying on the ground matters.")
# At the bound: the typical context repeated and cut to CONTEXT_MAX_CHARS at a word.
LONGEST = (TYPICAL + " ") * (CONTEXT_MAX_CHARS // len(TYPICAL) + 1)
LONGEST = LONGEST[:CONTEXT_MAX_CHARS].rsplit(" ", 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    parser.add_argument("--frames", type=int, default=8, help="frames per segment (default 8)")
    args = parser.parse_args(argv)

    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build_tiny_internvl(image_size=448))
    tok = processor.tokenizer
    try:
        from open_clip.tokenizer import SimpleTokenizer

        clip_bpe: Any = SimpleTokenizer()
    except ImportError:
        clip_bpe = None
    template = load_prompt()
    frames = [np.zeros((448, 448, 3), np.uint8)] * args.frames
    rows = []
    for name, context in (("none", None), ("typical", TYPICAL), ("at the bound", LONGEST)):
        body = camera_prompt(template, context, args.frames, image_token=processor.image_token)
        chat = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": body}]}],
                                             add_generation_prompt=True, tokenize=False)
        model_input = int(processor(text=[chat], images=frames, return_tensors="np")["input_ids"].shape[1])
        text = camera_prompt(template, context, args.frames, image_token="")
        rows.append({"context": name, "context_chars": len(context or ""), "model_input_tokens": model_input,
                     "tiny_text_tokens": len(tok(text)["input_ids"]),
                     "clip_bpe_text_tokens": None if clip_bpe is None else len(clip_bpe.encode(text))})
    base = rows[0]
    for r in rows:
        r["added_tiny"] = r["tiny_text_tokens"] - base["tiny_text_tokens"]
        r["added_clip_bpe"] = (None if clip_bpe is None else r["clip_bpe_text_tokens"] - base["clip_bpe_text_tokens"])
        r["added_model_input"] = r["model_input_tokens"] - base["model_input_tokens"]
    if args.json:
        print(json.dumps({"frames": args.frames, "rows": rows}))
        return 0
    print(f"one {args.frames}-frame segment, the paper's prompt + context (tiny InternVL processor at 448 px)")
    print(f"{'context':<14}{'chars':>6}{'model input':>13}{'(+)':>6}{'tiny text':>11}{'(+)':>6}"
          f"{'CLIP BPE text':>15}{'(+)':>6}")
    for r in rows:
        print(f"{r['context']:<14}{r['context_chars']:>6}{r['model_input_tokens']:>13}{r['added_model_input']:>6}"
              f"{r['tiny_text_tokens']:>11}{r['added_tiny']:>6}{r['clip_bpe_text_tokens']!s:>15}"
              f"{r['added_clip_bpe']!s:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
