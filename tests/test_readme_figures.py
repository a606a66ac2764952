"""The README's benchmark and demo figures are the ones in docs/figures.json, which tools/readme_figures.py
writes from fresh runs (report, eval, demo). A figure that drifts from its run fails here; rerun the tool
and copy what it wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
FIG = json.loads((REPO / "docs" / "figures.json").read_text(encoding="utf-8"))
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def row(label: str) -> list[str]:
    """The cells of the one README table row whose first cell starts with `label`."""
    rows = [line for line in README.splitlines() if line.startswith(f"| {label}")]
    assert len(rows) == 1, f"{len(rows)} README rows start with {label!r}"
    return [c.strip() for c in rows[0].strip().strip("|").split("|")]


def numbers(cell: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(cell.replace(",", " "))]


def test_every_group_was_measured() -> None:
    assert set(FIG["measured"]) == {"replay", "eval", "demo"}
    for half, videos in (("tune", 151), ("test", 139), ("all", 290)):
        assert FIG["replay"][half]["videos"] == videos


@pytest.mark.parametrize(("label", "keys"), [
    ("UCF-Crime offline (paper protocol, text-only) AUC / AP", [("eval", "offline", "auc"), ("eval", "offline", "ap")]),
    ("UCF-Crime causal (text-only, protocol smoothing, lookahead 0) AUC / AP",
     [("eval", "causal", "auc"), ("eval", "causal", "ap")]),
    ("online through the runtime, held-out half / full set: AUC, AP",
     [("replay", "test", "online_auc"), ("replay", "all", "online_auc"), ("replay", "test", "online_ap"),
      ("replay", "all", "online_ap")]),
    ("offline on the same halves: AUC, AP",
     [("replay", "test", "offline_auc"), ("replay", "all", "offline_auc"), ("replay", "test", "offline_ap"),
      ("replay", "all", "offline_ap")]),
    ("LaAP≈ online, held-out / full", [("replay", "test", "online_laap"), ("replay", "all", "online_laap")]),
    ("false alerts per hour of normal video, held-out / full",
     [("replay", "test", "false_alerts_per_hour"), ("replay", "all", "false_alerts_per_hour")]),
])
def test_measured_figures_rows_match_the_runs(label: str, keys: list[tuple[str, str, str]]) -> None:
    got = numbers(row(label)[1])
    want = [FIG[g][h][k] for g, h, k in keys]
    assert got[:len(want)] == want, f"README {label!r}: {got[:len(want)]} but the runs give {want}"


def test_detection_delay_row_matches_the_run() -> None:
    t = FIG["replay"]["test"]
    got = numbers(row("detection delay (GT start → first alert")[1])
    assert got[:6] == [t["median_delay_s"], t["p90_delay_s"], t["alerted_before_onset"], t["detected"],
                       t["detected"] - t["alerted_before_onset"], t["median_delay_after_onset_s"]]


def test_the_label_row_of_the_tuning_table_is_the_runtime_report() -> None:
    cells = row("today (labels, `replay_ucf.yaml`)")
    r = [FIG["replay"][h] for h in ("tune", "test", "all")]
    assert numbers(cells[1]) == [x["online_auc"] for x in r]
    assert numbers(cells[2]) == [x["online_ap"] for x in r]
    assert numbers(cells[3]) == [x["online_laap"] for x in r]
    assert numbers(cells[4]) == [x["false_alerts_per_hour"] for x in r]
    assert numbers(cells[5]) == [v for x in r for v in (x["detected"], x["anomalous_videos"])]
    assert numbers(cells[6]) == [v for x in r for v in (x["median_delay_s"], x["p90_delay_s"])]


def test_demo_alert_times_match_the_run() -> None:
    demo = FIG["demo"]
    modes = [m for m in ("text", "labels") if m in demo]
    want = [demo[m]["first_alert_s"][v] for m in modes for v in demo["videos"]]
    assert None not in want, demo  # every default video alerts
    cell = row("`corevad-stream demo` first alert of each default video")[1]
    assert numbers(cell) == want
    # The demo's own paragraph says the same.
    m = re.search(r"first alert ([\d, and]+) s into their streams", README)
    assert m is not None and numbers(m.group(1)) == want[:len(demo["videos"])]
