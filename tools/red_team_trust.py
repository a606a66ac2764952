"""The trust red-team of issue 18 (items 7-15), rerun black-box: one table for whichever code PYTHONPATH names.

    before: PYTHONPATH=/path/to/old/checkout .venv/bin/python tools/red_team_trust.py
    after:  PYTHONPATH=$PWD .venv/bin/python tools/red_team_trust.py          # about 1.5 minutes
    (--only 7-10 11 ... runs some scenarios; --keep DIR keeps their configs, logs and JSONL files)

Nothing of the product is imported: the monitor runs as `python -m corevad_stream.cli run|check` processes
(outside the checkout, so PYTHONPATH decides which code runs), driven over HTTP (httpx) and read through its
log and JSONL file. The model servers are tiny stdlib OpenAI-compatible servers inside this script
(/v1/models, /v1/chat/completions) and the file cameras are clips made with ffmpeg, so the script needs none
of the newer code's test helpers. Every wait is bounded; a crash or a refusal is an outcome, recorded.

Reading the table: item 11's 1 MB row is under the byte bound (the answer is cut to max_answer_chars) and the
10 MB row over it (refused: the score says available: false); item 15's "completions sent to the bad one"
include the trial completions that decide re-admission; rows marked "control" show the fix still lets the
legitimate request through.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

NORMAL = "Normal scenes.\nA street."
ANOMALOUS = "Anomalous scenes.\nA fight."
AUTH = ("admin", "s3cret-pw")
SCORE_KIND = re.compile(rb'"kind":\s*"score"')  # one line of the JSONL sink per scored segment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModelServer:
    """An OpenAI-compatible server on loopback: `answer` is the reply text, `delay_s` a sleep per completion,
    `fail` makes every completion a 500 while /v1/models still answers 200."""

    def __init__(self, *, answer: str = NORMAL, delay_s: float = 0.0, fail: bool = False) -> None:
        self.answer, self.delay_s, self.fail = answer, delay_s, fail
        self.completions = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.rstrip("/").endswith("/models") or self.path.endswith("/health"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(min(length, 50_000_000))
                owner.completions += 1
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                if owner.fail:
                    self._send(500, b'{"error": {"message": "completions broken"}}')
                    return
                body = {"id": "x", "object": "chat.completion", "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": owner.answer}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                self._send(200, json.dumps(body).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def model_server(**kw: Any) -> Iterator[ModelServer]:
    srv = ModelServer(**kw)
    try:
        yield srv
    finally:
        srv.close()


class Monitor:
    """One `corevad-stream run` process in its own session (killed with its group at the end)."""

    def __init__(self, cfg: Path, *, env: dict[str, str] | None = None, jsonl: Path | None = None) -> None:
        self.log = cfg.with_suffix(".log")
        extra = ["--jsonl", str(jsonl)] if jsonl else []
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "corevad_stream.cli", "run", "-c", str(cfg), "--no-live", *extra],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=cfg.parent,
                env={**os.environ, **(env or {})})

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_mb(self) -> float | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(10)


def wait_for(pred: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            got = pred()
            if got:
                return got
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def write_config(path: Path, cameras: list[dict[str, Any]], *, model: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, **sections: Any) -> Path:
    state = path.parent / (path.stem + "-state")
    runtime = {"frame_size": 32, "frames_per_segment": 2, "stats_interval_s": 1.0, "state_dir": str(state),
               **sections.pop("runtime", {})}
    data = {"cameras": cameras, "model": model or {"clip": None, "vlm": {"backend": "replay"}},
            "metrics": metrics or {"enabled": False}, "runtime": runtime,
            "refinement": {"smooth_length": 1, "use_features": False},
            "alerts": {"close_after_s": 0, "cooldown_s": 0, "snapshot": False}, **sections}
    path.write_text(yaml.safe_dump(data))
    return path


def replay_model(work: Path, answers: dict[str, list[str]]) -> dict[str, Any]:
    responses = work / "answers.json"
    responses.write_text(json.dumps(answers))
    return {"clip": None, "vlm": {"backend": "replay", "responses": str(responses)}}


def openai_model(urls: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"clip": None, "vlm": {"backend": "openai", "max_new_tokens": 16, "openai": {
        "base_url": urls, "model": "m", "api_key_env": None, "max_side": 32, "max_retries": 1,
        "backoff_s": 0.1, **extra}}}


def check(cfg: Path, timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int | str, str]:
    try:
        out = subprocess.run([sys.executable, "-m", "corevad_stream.cli", "check", "-c", str(cfg)],
                             capture_output=True, text=True, timeout=timeout, cwd=cfg.parent,
                             env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return out.returncode, (out.stdout + out.stderr).strip()


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def make_clip(path: Path, seconds: int) -> Path:
    source = f"testsrc2=size=64x64:rate=10:duration={seconds}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "mpeg4",
                    "-q:v", "5", str(path)], check=True, timeout=120)
    return path


# ---- the scenarios: each returns rows (item, what was tried, outcome) ----------------------------------------

Row = tuple[str, str, str]


def web_items(work: Path) -> list[Row]:
    """Items 7, 8, 9 and the headers of 10: one monitor with basic auth on loopback."""
    port = free_port()
    at_url = "rtsp://admin:p@ss/w0rd@127.0.0.1:9/stream"
    space_url = "rtsp://admin:my pass@127.0.0.1:9/stream"
    cams = [{"name": "at", "url": at_url}, {"name": "space", "url": space_url},
            {"name": "alerting", "url": "frameless://", "rate": "native"}]
    cfg = write_config(work / "web.yaml", cams, model=replay_model(work, {"alerting": [ANOMALOUS] * 100_000}),
                       metrics={"host": "127.0.0.1", "port": port, "username": AUTH[0], "password_env": "RT_PW"},
                       runtime={"segment_seconds": 0.1})
    jsonl = work / "web.jsonl"
    mon = Monitor(cfg, env={"RT_PW": AUTH[1]}, jsonl=jsonl)
    base = f"http://127.0.0.1:{port}"
    rows: list[Row] = []
    try:
        with httpx.Client(base_url=base, auth=AUTH, timeout=10) as http:
            cams_seen = wait_for(lambda: http.get("/api/cameras").raise_for_status().json(), 90, mon.proc)
            if cams_seen is None:
                crash = short(mon.text()[-300:])
                return [(i, "monitor with credentials in camera URLs", f"run did not serve the API "
                         f"(rc {mon.proc.poll()}): {crash}") for i in ("7", "8", "9", "10")]
            listed = cams_seen if isinstance(cams_seen, list) else cams_seen.get("cameras", [])
            shown = {c.get("name"): c.get("url") for c in listed if isinstance(c, dict)}
            # both unreachable cameras have said why in the log (or 30 s passed)
            wait_for(lambda: all(re.search(rf"camera {n}\b[^\n]*(?:offline|cannot|fail)", mon.text())
                                 for n in ("at", "space")), 30, mon.proc)
            log = mon.text()
            leaks = [s for s in ("ss/w0rd", "my pass") if s in log]
            named = [line for line in log.splitlines() if "corevad_stream" in line and "rtsp://" in line]
            log_urls = sorted({m.rstrip(":,)") for line in named
                               for m in re.findall(r"rtsp://\S*(?: pass\S*)?", line)})
            rows.append(("7", f"password p@ss/w0rd: {at_url}", f"/api/cameras shows {shown.get('at')!r}"))
            rows.append(("7", f"password with a space: {space_url}", f"/api/cameras shows {shown.get('space')!r}"))
            rows.append(("7", "run's log", f"secret in log: {leaks or 'no'}; URLs logged: {log_urls or 'none'}"))
            files = [jsonl, *sorted((work / "web-state").glob("*"))]
            stored = {f.name: [s for s in ("ss/w0rd", "my pass") if s.encode() in f.read_bytes()]
                      for f in files if f.is_file() and f.stat().st_size < 50_000_000}
            rows.append(("7", "JSONL sink and state files (sqlite store)",
                         f"secret in: {({k: v for k, v in stored.items() if v}) or 'none'}"))

            def first_alert() -> Any:
                data = http.get("/api/events").json()
                items = data if isinstance(data, list) else data.get("events") or data.get("items") or []
                return items[0] if items else None

            alert = wait_for(first_alert, 60, mon.proc)
            if alert is None:
                rows.append(("8", "cross-origin form POST ack", "no alert opened within 60 s (not tried)"))
            else:
                aid = alert.get("id")
                r = http.post(f"/api/events/{aid}/ack", content=b"x=1",
                              headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site",
                                       "Content-Type": "application/x-www-form-urlencoded"})
                after = http.get("/api/events").json()
                items = after if isinstance(after, list) else after.get("events") or after.get("items") or []
                rec: dict[str, Any] = next((e for e in items if e.get("id") == aid), {})
                acked = {k: v for k, v in rec.items() if "ack" in k.lower()}
                rows.append(("8", "POST /api/events/<id>/ack, Origin: http://evil.example, form body, basic auth",
                             f"{r.status_code}; alert after: {acked or 'no ack field'}"))
                # the control: the page's own request (same origin, JSON) still acknowledges
                r = http.post(f"/api/events/{aid}/ack", json={},
                              headers={"Origin": base, "Sec-Fetch-Site": "same-origin"})
                rows.append(("8", "control: same ack, Origin = the server, JSON body", f"{r.status_code}"))
            r = http.get("/api/cameras", headers={"Host": "attacker.example"})
            rows.append(("9", "GET /api/cameras with Host: attacker.example", f"{r.status_code}"))
            r = http.get("/")
            want = ("content-security-policy", "x-frame-options", "x-content-type-options")
            present = [h for h in want if h in r.headers]
            rows.append(("10", "security headers on GET /", f"{r.status_code}; present: {present or 'none'}"))
    finally:
        mon.stop()
    return rows


def empty_password(work: Path) -> list[Row]:
    """Item 10: metrics on 0.0.0.0, a username and an empty password env var."""
    port = free_port()
    cfg = write_config(work / "empty.yaml", [{"name": "c", "url": "frameless://", "rate": "native"}],
                       model=replay_model(work, {"c": [NORMAL] * 100_000}), runtime={"segment_seconds": 0.1},
                       metrics={"host": "0.0.0.0", "port": port, "username": "admin", "password_env": "RT_EMPTY"})
    rc, out = check(cfg, env={"RT_EMPTY": ""})
    rows: list[Row] = [("10", "check: metrics.host 0.0.0.0, username, RT_EMPTY=''",
                        f"exit {rc}: {short(out.replace(str(cfg), cfg.name).splitlines()[-1] if out else '', 90)}")]
    mon = Monitor(cfg, env={"RT_EMPTY": ""})
    try:
        def answered() -> Any:
            return httpx.get(f"http://127.0.0.1:{port}/api/cameras", auth=("admin", ""), timeout=5).status_code
        code = wait_for(answered, 60, mon.proc)
        if code is None:
            said = mon.text().replace(str(cfg), cfg.name).strip().splitlines() or [""]
            rows.append(("10", "run with the same config; curl -u admin:",
                         f"run exited {mon.proc.poll()}: {short(said[-1], 90)}"))
        else:
            rows.append(("10", "run with the same config; curl -u admin:", f"run serves; -u admin: gets {code}"))
    finally:
        mon.stop()
    return rows


def huge_answer(work: Path, seconds: float, size: int) -> list[Row]:
    """Item 11: the model server answers `size` bytes of text per completion."""
    clip = make_clip(work / f"huge{size}.mp4", 120)
    jsonl = work / f"huge{size}.jsonl"
    with model_server(answer=ANOMALOUS + "x" * size) as srv:
        cfg = write_config(work / f"huge{size}.yaml", [{"name": "c", "url": str(clip), "rate": "native"}],
                           model=openai_model(srv.base_url))
        mon = Monitor(cfg, jsonl=jsonl)
        try:
            peak = 0.0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and mon.proc.poll() is None:
                peak = max(peak, mon.rss_mb() or 0.0)
                time.sleep(0.5)
            crashed = mon.proc.poll()
        finally:
            mon.stop()
        calls = srv.completions
    largest, total, available = 0, 0, {"true": 0, "false": 0}
    counters: dict[str, str] = {}
    if jsonl.exists():
        total = jsonl.stat().st_size
        with jsonl.open("rb") as fh:
            for line in fh:
                head = line[:400]
                if SCORE_KIND.search(head):
                    largest = max(largest, len(line))
                    flag = re.search(rb'"available":\s*(true|false)', line[-400:])
                    if flag:
                        available[flag.group(1).decode()] += 1
                elif re.search(rb'"kind":\s*"stats"', head):  # the newest stats win
                    counters.update({k.decode(): v.decode() for k, v in
                                     re.findall(rb'"(answers_cut|answers_refused)":\s*(\d+)', line)})
    note = f" (run exited {crashed})" if crashed is not None else ""
    said = ", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "no answers_cut/refused in stats"
    return [("11", f"{size / 1e6:g} MB answers for {seconds:.0f} s ({calls} completions)",
             f"{available['true'] + available['false']} score lines ({available['false']} available: false), "
             f"largest {largest / 1e3:.1f} kB, JSONL {total / 1e6:.1f} MB, peak RSS {peak:.0f} MB; {said}{note}")]


def bad_checks(work: Path) -> list[Row]:
    """Items 12 and 13: `check` on configs `run` cannot use."""
    rows: list[Row] = []
    model = replay_model(work, {"c": [NORMAL]})
    cases: list[tuple[str, str, Any]] = [
        ("12", "camera host does not resolve", {"url": "rtsp://no-such-host.invalid:554/s"}),
        ("12", "frameless://abc", {"url": "frameless://abc"}),
        ("12", "?fps=0", {"url": "frameless://?fps=0"}),
        ("12", "store.path under /proc", {"store": {"path": "/proc/corevad/events.sqlite3"}}),
        ("13", "home_assistant.discovery_prefix: 'ha/#'",
         {"mqtt": {"host": "127.0.0.1", "port": free_port(), "home_assistant": {"discovery_prefix": "ha/#"}}}),
        ("13", "mqtt.prefix: '$SYS/x'", {"mqtt": {"host": "127.0.0.1", "port": free_port(), "prefix": "$SYS/x"}}),
        ("13", "sample://../../x", {"url": "sample://../../x"}),
    ]
    def outcome(rc: int | str, out: str, cfg: Path) -> str:
        out = out.replace(str(cfg), cfg.name)
        lines = [line for line in out.splitlines() if line.strip()]
        said = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
        shape = "Traceback" if "Traceback" in out else f"{len(lines)} line(s)"
        return f"exit {rc}, {shape}: {short(said, 90)}"

    for i, (item, what, change) in enumerate(cases):
        cam = {"name": "c", "url": change.pop("url", "frameless://"), "rate": "native"}
        cfg = write_config(work / f"bad{i}.yaml", [cam], model=model, **change)
        rc, out = check(cfg)
        rows.append((item, f"check: {what}", outcome(rc, out, cfg)))
    deep = work / "deep.yaml"
    deep.write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    rc, out = check(deep)
    rows.insert(4, ("12", "check: YAML nested 10,000 deep", outcome(rc, out, deep)))
    return rows


def block_fast(work: Path) -> list[Row]:
    """Item 14: a file camera at rate fast, overload_policy block, a model taking 0.2 s per answer."""
    clip = make_clip(work / "fast.mp4", 60)
    jsonl = work / "fast.jsonl"
    with model_server(delay_s=0.2) as srv:
        cfg = write_config(work / "fast.yaml", [{"name": "c", "url": str(clip), "rate": "fast",
                                                 "overload_policy": "block"}], model=openai_model(srv.base_url))
        mon = Monitor(cfg, jsonl=jsonl)
        try:
            finished = wait_for(lambda: mon.proc.poll() is not None, 120)
            rc = mon.proc.poll()
        finally:
            mon.stop()
    segs: set[Any] = set()
    if jsonl.exists():
        for line in jsonl.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                rec = json.loads(line)
                if rec["kind"] == "score":
                    segs.add(rec["payload"]["index"])
    text = mon.text()
    lost = re.findall(r"[^\n]*(?:WARNING|ERROR)[^\n]*(?:dropp|lost|ran out|skipp|slot)[^\n]*", text)
    drops = re.findall(r"drops=(\d+)", text)
    how = "file ended" if finished else "stopped at 120 s"
    return [("14", "60 s file, rate: fast, block, model 0.2 s/answer",
             f"{len(segs)} of 60 segments scored ({how}, rc {rc}); last stats drops="
             f"{drops[-1] if drops else '?'}; warning about loss: {short(lost[0], 60) if lost else 'none'}")]


def flapping_replica(work: Path, seconds: float) -> list[Row]:
    """Item 15: two replicas; one answers /models but fails every completion."""
    clip = make_clip(work / "pool.mp4", 120)
    with model_server() as good, model_server(fail=True) as bad:
        cfg = write_config(work / "pool.yaml", [{"name": "c", "url": str(clip), "rate": "native", "loop": True}],
                           model=openai_model([good.base_url, bad.base_url], eject_after=1, probe_interval_s=1.0))
        mon = Monitor(cfg)
        try:
            time.sleep(seconds)
            alive = mon.proc.poll() is None
        finally:
            mon.stop()
        sent_bad = bad.completions
    text = mon.text()
    readmits = len(re.findall(r"back in the pool", text))
    ejects = len(re.findall(r"out of the pool", text))
    note = "" if alive else f" (run exited {mon.proc.returncode})"
    return [("15", f"pool [good, /models ok + completions 500], {seconds:.0f} s, probe every 1 s",
             f"re-admitted {readmits}x, ejected {ejects}x, {sent_bad} completions sent to the bad one{note}")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--only", nargs="*", help="run only these scenarios (7-10, 10, 12-13, 11, 14, 15)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (configs, logs, JSONL)")
    args = ap.parse_args()
    started = time.monotonic()
    rows: list[Row] = []
    scenarios: list[tuple[str, Callable[[Path], list[Row]]]] = [
        ("7-10", web_items), ("10", empty_password), ("12-13", bad_checks),
        ("11", lambda w: huge_answer(w, 20.0, 10_000_000) + huge_answer(w, 10.0, 1_000_000)),
        ("14", block_fast), ("15", lambda w: flapping_replica(w, 20.0))]
    with contextlib.ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rt-trust-")))
        for name, scenario in scenarios:
            if args.only and name not in args.only:
                continue
            work = tmp / name
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            try:
                rows += scenario(work)
            except Exception as exc:  # noqa: BLE001 - a scenario that breaks is an outcome, not the end
                rows.append((name, "scenario", f"script error: {type(exc).__name__}: {short(str(exc), 80)}"))
            print(f"[{name} done in {time.monotonic() - t0:.0f} s]", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([{"item": i, "tried": w, "outcome": o} for i, w, o in rows], indent=1))
    else:
        width = max(len(w) for _, w, _ in rows)
        print(f"{'item':<5} {'what was tried':<{width}}  outcome")
        for item, what, outcome in rows:
            print(f"{item:<5} {what:<{width}}  {outcome}")
        print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
