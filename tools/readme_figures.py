"""Rerun what produces the README's benchmark and demo figures and write them to docs/figures.json, the file
tests/test_readme_figures.py checks the README against (so a figure cannot drift from its run again).

    .venv/bin/python tools/readme_figures.py                 # all: about 2 min on a quiet 2-core machine
    .venv/bin/python tools/readme_figures.py --only demo     # one group (replay, eval, demo), others kept

Groups:
  replay  `corevad-stream report` (label scoring, configs/replay_ucf.yaml) on the held-out half
          and the full set: online and offline AUC / AP / LaAP≈, false alerts per hour, detection delays;
  eval    `corevad eval` of the core: offline (paper protocol) and causal AUC / AP, text-only;
  demo    `corevad-stream demo` (the default videos, at real time: faster paces dropped segments on a loaded
          machine, which changes the scores; a run with drops is refused) with --jsonl: when each camera's
          first alert opens, in seconds of its stream (the end of the segment whose score crossed the
          threshold), labels only and, where the sentence encoder is installed, with the text context (the
          demo's default then). About 70 s each.
Every run gets its own temporary state and cache directories, so nothing else on the machine changes them.
Figures are percentages rounded to 2 decimals (as the README prints them) and seconds to 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from corevad_stream.testing import free_port

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "figures.json"


def _pct(x: float) -> float:
    return round(100 * x, 2)


def _run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"readme_figures: {' '.join(cmd[:6])} ... exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def _env(tmp: Path) -> dict[str, str]:
    # Private state (open-alert record, outbox) and cache (sentence embeddings are cached: both runs equal).
    return {**os.environ, "XDG_STATE_HOME": str(tmp / "state"), "PYTHONPATH": str(REPO)}


def replay_figures(data: Path, env: dict[str, str]) -> dict[str, Any]:
    d = data / "ucf_crime"
    out: dict[str, Any] = {}
    for half in ("tune", "test", "all"):
        s = json.loads(_run([sys.executable, "-m", "corevad_stream.cli", "report", "--dataset", "ucf-crime",
                             "--annotations", str(d / "test_annotations.tsv"), "--responses",
                             str(d / "VLM_responses_LRC_ucf.json"), "--half", half, "--json"], env))
        on, off, al = s["online"], s["offline"], s["alerts"]
        out[half] = {
            "online_auc": _pct(on["auc"]), "online_ap": _pct(on["ap"]), "online_laap": _pct(on["laap_approx"]),
            "offline_auc": _pct(off["auc"]), "offline_ap": _pct(off["ap"]),
            "false_alerts_per_hour": round(al["false_alerts_per_hour"], 2),
            "detected": al["detected"], "anomalous_videos": al["anomalous_videos"],
            "alerted_before_onset": al["alerted_before_onset"],
            "median_delay_s": round(al["median_delay_s"], 1), "p90_delay_s": round(al["p90_delay_s"], 1),
            "median_delay_after_onset_s": round(al["median_delay_after_onset_s"], 2),
            "segments": s["segments"], "videos": s["videos"],
        }
    return out


def eval_figures(data: Path, env: dict[str, str]) -> dict[str, Any]:
    d = data / "ucf_crime"
    out: dict[str, Any] = {}
    for mode in ("offline", "causal"):
        s = json.loads(_run([sys.executable, "-m", "corevad.cli", "eval", "--dataset", "ucf-crime", "--annotations",
                             str(d / "test_annotations.tsv"), "--responses", str(d / "VLM_responses_LRC_ucf.json"),
                             "--mode", mode, "--json"], env))
        out[mode] = {"auc": _pct(s["auc"]), "ap": _pct(s["ap"])}
    return out


def demo_figures(data: Path, env: dict[str, str], tmp: Path, speed: float) -> dict[str, Any]:
    from corevad_stream.demo import DEFAULT_VIDEOS, have_text_encoder

    modes = {"labels": ["--labels-only"]}
    if have_text_encoder():
        modes["text"] = []
    out: dict[str, Any] = {"videos": list(DEFAULT_VIDEOS)}
    for mode, extra in modes.items():
        jsonl = tmp / f"demo-{mode}.jsonl"
        _run([sys.executable, "-m", "corevad_stream.cli", "demo", "--responses",
              str(data / "ucf_crime" / "VLM_responses_LRC_ucf.json"), "--speed", f"{speed:g}", "--no-live",
              "--mqtt-port", str(free_port()), "--metrics-port", "0", "--jsonl", str(jsonl), *extra], env)
        first: dict[str, float] = {}
        stats: dict[str, Any] = {}
        for line in jsonl.read_text().splitlines():
            rec = json.loads(line)
            ev = rec["payload"]
            if rec["kind"] == "stats":
                stats = ev["cameras"]
            if rec["kind"] == "events" and ev.get("type") == "new":
                cam = ev["after"]["camera"]
                # 1-s segments at real time: segment k ends k + 1 s into the camera's stream.
                first.setdefault(cam, float(ev["after"]["start_segment"] + 1))
        drops = sum(c["drops"] for c in stats.values())
        if drops:
            raise SystemExit(f"readme_figures: the demo ({mode}) dropped {drops} segment(s): its alert times are "
                             "not the recorded answers' (a loaded machine? rerun, or lower --demo-speed)")
        out[mode] = {"first_alert_s": {v: first.get(v) for v in DEFAULT_VIDEOS},
                     "scored": sum(c["scored"] for c in stats.values()), "drops": drops, "speed": speed}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="Benchmark data folder.")
    ap.add_argument("--only", choices=["replay", "eval", "demo"], action="append", help="Rerun only these groups.")
    ap.add_argument("--demo-speed", type=float, default=1.0, help="Pace of the demo runs (default 1: real time).")
    ap.add_argument("--out", type=Path, default=OUT, help=f"Output JSON (default {OUT.relative_to(REPO)}).")
    args = ap.parse_args()
    if not (args.data / "ucf_crime" / "VLM_responses_LRC_ucf.json").is_file():
        print(f"readme_figures: --data {args.data}: no ucf_crime/VLM_responses_LRC_ucf.json there", file=sys.stderr)
        return 2
    groups = args.only or ["replay", "eval", "demo"]
    figures: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="readme_figures_") as t:
        tmp = Path(t)
        env = _env(tmp)
        for group in groups:
            started = dt.datetime.now(dt.UTC)
            if group == "replay":
                figures["replay"] = replay_figures(args.data, env)
            elif group == "eval":
                figures["eval"] = eval_figures(args.data, env)
            else:
                figures["demo"] = demo_figures(args.data, env, tmp, args.demo_speed)
            figures.setdefault("measured", {})[group] = started.strftime("%Y-%m-%d")
            print(json.dumps({group: figures[group]}), flush=True)
    figures["about"] = "written by tools/readme_figures.py; tests/test_readme_figures.py checks README.md against it"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(sorted(figures.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
