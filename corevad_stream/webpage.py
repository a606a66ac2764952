"""The review page as one self-contained HTML file: the live page's files with a replay's data inlined.

Why the same page: a researcher browsing a benchmark replay sees what an operator sees (cameras are the
videos, alerts over the score timeline), plus the ground-truth spans. No server, no network: the CSS,
JavaScript and data sit inside the file, so it opens from disk or a CI artifact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .http import web_file

_CSS_LINK = '<link rel="stylesheet" href="static/corevad.css">'
_JS_TAG = '<script src="static/corevad.js"></script>'
_ARMING_TAG = '<script src="static/arming.js"></script>\n'  # a replay has nothing to arm: left out


def _web(name: str) -> str:
    body = web_file(name)  # the live server's reader of the page's files
    if body is None:
        raise RuntimeError(f"the review page's file {name} is missing from the package data")
    return body.decode("utf-8")


def static_page(data: Mapping[str, Any]) -> str:
    """The page with `data` (the shape replay_page_data returns) inlined as JSON."""
    html = _web("index.html")
    if _CSS_LINK not in html or _JS_TAG not in html:
        raise RuntimeError("web/index.html lost the stylesheet link or script tag static_page replaces")
    # "<" escaped inside the JSON, so no text of the model's can close the script element.
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    html = html.replace(_CSS_LINK, f"<style>\n{_web('corevad.css')}</style>").replace(_ARMING_TAG, "")
    return html.replace(_JS_TAG, f'<script id="corevad-data" type="application/json">{blob}</script>\n'
                                 f"<script>\n{_web('corevad.js')}</script>")


def replay_page_data(result: Any, *, title: str, fps: float = 30.0) -> dict[str, Any]:
    """Videos as cameras (class, GT spans in seconds, segment scores), alerts in video seconds."""
    seg_s = 1.0
    open_t, close_t = result.alert_params.open_threshold, result.alert_params.close_threshold
    cameras, alerts = [], []
    for v in result.videos:
        gt = v.gt
        cameras.append({
            "name": gt.name, "status": gt.cls, "state": "anomalous" if v.alerts else "normal",
            "spans": [[s / fps, e / fps] for s, e in gt.spans], "alerts": len(v.alerts),
            "scores": [None if not math.isfinite(float(x)) else round(float(x), 4) for x in v.segment_scores],
            "open_threshold": open_t, "close_threshold": close_t,
        })
        for a in v.alerts:
            start, end = a.interval(seg_s)
            alerts.append({"id": f"{gt.name}-{a.start_segment}", "camera": gt.name, "start_time": start,
                           "end_time": end, "active": False, "peak_score": round(a.peak_score, 4),
                           "explanation": list(a.explanation), "end_reason": None, "acknowledged_at": None})
    return {"title": title, "segment_seconds": seg_s, "cameras": cameras, "alerts": alerts}


def write_replay_page(result: Any, path: Path, *, title: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(static_page(replay_page_data(result, title=title)), encoding="utf-8")
    tmp.replace(path)
    return path
