"""The durability red-team of issue 18 (items 1-5), rerun: what reaches the broker when the state disk fails.

Real parts only: a private Mosquitto (tests/services.py), real file systems made to fail (tests/fs_faults.py:
a tmpfs filled to the last byte, an ext4 image shut down with EXT4_IOC_SHUTDOWN), and the monitor itself as
`corevad-stream run` / `check` processes, so the code measured is whatever PYTHONPATH points at:

    sudo env PYTHONPATH=$PWD .venv/bin/python tools/red_team_durability.py     # this checkout, ~1.5 min
    sudo env PYTHONPATH=/path/to/other/checkout .venv/bin/python tools/red_team_durability.py   # another one

(the monitor processes run outside the checkout, so PYTHONPATH, else the installed package, is what runs).

Needs root (mounts). Expected events are those the monitor itself wrote to its JSONL file (on a healthy
disk); published ones are those a subscriber received (a repeat counted once: QoS 1 is at-least-once).

Scenarios: (1) the outbox's and store's disk fills mid-run, then space comes back; (2) that disk dies
mid-run (every write fails); (3) a damaged outbox file at start; (4) two monitors with one prefix and their
own runtime.state_dir (the README's multi-monitor recipe).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
# The same Mosquitto and failing file systems the tests use.
from corevad_stream.testing import Mosquitto, MqttCollector  # noqa: E402
from corevad_stream.testing.fs_faults import ext4_image, fill, shut_down, small_tmpfs  # noqa: E402

ANSWERS = ["Normal scenes.\nA street."] * 3 + ["Anomalous scenes.\nA fight."] * 2 + ["Normal scenes.\nA street."] * 5


def _config(path: Path, *, camera: str, prefix: str, broker: Mosquitto, state: Path,
            outbox: Path | None = None) -> Path:
    responses = path.with_suffix(".answers.json")
    responses.write_text(json.dumps({camera: ANSWERS * 2000}))
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.port, "prefix": prefix,
                            "reconnect": {"min_delay_s": 0.1, "max_delay_s": 1.0}}
    if outbox is not None:
        mqtt["outbox"] = {"path": str(outbox)}
    data = {"cameras": [{"name": camera, "url": "frameless://", "rate": "native"}],
            "model": {"vlm": {"backend": "replay", "responses": str(responses)}, "clip": None},
            "refinement": {"smooth_length": 1, "use_features": False},
            "alerts": {"close_after_s": 0, "cooldown_s": 0, "snapshot": False},
            "metrics": {"enabled": False}, "mqtt": mqtt,
            "runtime": {"segment_seconds": 0.1, "stats_interval_s": 1.0, "state_dir": str(state)}}
    path.write_text(yaml.safe_dump(data))
    return path


def _start(cfg: Path, log: Path, jsonl: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "corevad_stream.cli", "run", "-c", str(cfg), "--no-live",
                                 "--jsonl", str(jsonl), *extra], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cfg.parent)  # not the checkout: PYTHONPATH decides


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(10)


def _expected(jsonl: Path) -> list[tuple[str, str]]:
    out = []
    if jsonl.exists():
        for line in jsonl.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                rec = json.loads(line)
                if rec["kind"] == "events":
                    out.append((rec["payload"]["type"], rec["payload"]["after"]["id"]))
    return out


def _received(sub: MqttCollector, topic: str) -> list[tuple[str, str]]:
    seen = []
    for p in sub.payloads(topic):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            e = json.loads(p)
            seen.append((e["type"], e["after"]["id"]))
    return list(dict.fromkeys(seen))


def _rows(path: Path, sql: str) -> int | str:
    try:
        if not path.exists():
            return "no file"
        db = sqlite3.connect(path, timeout=2)  # not mode=ro: a WAL file without its -shm cannot be read so
        try:
            return int(db.execute(sql).fetchone()[0])
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        return f"unreadable ({exc})"


async def _wait(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def failing_disk(work: Path, broker: Mosquitto, kind: str, seconds: float) -> dict[str, Any]:
    """Items 1-3: the disk holding the outbox and the store fills (then frees) or dies mid-run."""
    prefix = f"rt{kind}"
    mount = small_tmpfs(work / kind, size_kb=8192) if kind == "full" else ext4_image(work / kind)
    with mount as state:
        cfg = _config(work / f"{kind}.yaml", camera="cam", prefix=prefix, broker=broker, state=state,
                      outbox=state / "outbox.sqlite3")
        log, jsonl = work / f"{kind}.log", work / f"{kind}.jsonl"
        sub = MqttCollector(broker.host, broker.port, (f"{prefix}/events",))
        await sub.start()
        proc = _start(cfg, log, jsonl)
        try:
            started = await _wait(lambda: len(sub.payloads(f"{prefix}/events")) >= 2, 60)
            filler = fill(state) if kind == "full" else None
            if kind == "dead":
                shut_down(state)
            await asyncio.sleep(seconds)
            if filler is not None:
                filler.unlink()  # space is back
                await asyncio.sleep(seconds / 2)
        finally:
            rc = _stop(proc)
            await asyncio.sleep(1.0)
            await sub.stop()
        text = log.read_text(errors="replace")
        claimed = re.search(r"(\d+) event\(s\) not delivered yet; kept in", text)
        want = _expected(jsonl)
        got = _received(sub, f"{prefix}/events")
        in_outbox = _rows(state / "outbox.sqlite3", "SELECT COUNT(*) FROM outbox") if kind == "full" else "n/a"
        stored = (_rows(state / f"events-{prefix}.sqlite3", "SELECT COUNT(*) FROM alerts") if kind == "full"
                  else "n/a")
    return {
        "started": started, "rc": rc, "events_expected": len(want), "events_published": len(got),
        "events_missing": len(set(want) - set(got)),
        "false_broker_outages": len(re.findall(r"unreachable", text)),
        "negative_len": "__len__() should return >= 0" in text,
        "shutdown_claims_kept": int(claimed.group(1)) if claimed else 0, "rows_in_outbox_after": in_outbox,
        "alerts_expected": len({i for _, i in want}), "alerts_stored": stored,
        "tracebacks": text.count("Traceback"),
    }


def count_drift(work: Path) -> dict[str, Any]:
    """Item 2: the outbox's count against its committed rows while commits fail on a full disk."""
    from corevad_stream.sinks.outbox import Outbox  # the product PYTHONPATH names

    drift, lowest, failures, negative = 0, 0, 0, False
    with small_tmpfs(work / "count", size_kb=256) as state:
        path = state / "o.sqlite3"
        box = Outbox(path)
        for i in range(5):
            box.append(f"t/{i}", b"x" * 100, qos=1)
        fill(state)
        ops: list[Any] = [lambda i=i: box.append(f"big/{i}", b"y" * 20_000, qos=1) for i in range(40)]
        ops += [lambda e=e: box.ack(e.id) for e in box.peek(1000) * 20]  # a pump acking again and again
        for op in ops:
            try:
                op()
            except sqlite3.Error:
                failures += 1
            try:
                n = len(box)
            except ValueError:  # __len__() should return >= 0
                negative, n = True, box._count  # noqa: SLF001 - what the broken count was
            rows = _rows(path, "SELECT COUNT(*) FROM outbox")
            if isinstance(rows, int):
                drift = max(drift, abs(n - rows))
            lowest = min(lowest, n)
        box.close()
    return {"failed_commits": failures, "max_drift": drift, "lowest_count": lowest, "negative_len": negative}


async def corrupt_outbox(work: Path, broker: Mosquitto) -> dict[str, Any]:
    """Item 4: a damaged outbox file at start."""
    state = work / "corrupt"
    state.mkdir()
    outbox = state / "outbox.sqlite3"
    outbox.write_bytes(b"this is not a database" * 200)
    cfg = _config(work / "corrupt.yaml", camera="cam", prefix="rtbad", broker=broker, state=state, outbox=outbox)
    check = subprocess.run([sys.executable, "-m", "corevad_stream.cli", "check", "-c", str(cfg)],
                           capture_output=True, text=True, timeout=120, cwd=work)
    sub = MqttCollector(broker.host, broker.port, ("rtbad/events",))
    await sub.start()
    log, jsonl = work / "corrupt.log", work / "corrupt.jsonl"
    proc = _start(cfg, log, jsonl)
    try:
        await _wait(lambda: len(sub.payloads("rtbad/events")) >= 4 or proc.poll() is not None, 30)
    finally:
        rc = _stop(proc)
        await asyncio.sleep(0.5)
        await sub.stop()
    said = (check.stdout + check.stderr).strip().splitlines()
    return {"check_rc": check.returncode, "check_says": next((ln for ln in said if "outbox" in ln.lower()),
                                                              said[-1] if said else ""),
            "run_rc": rc, "events_expected": len(_expected(jsonl)),
            "events_published": len(_received(sub, "rtbad/events")),
            "set_aside": sorted(p.name for p in state.iterdir() if ".bad-" in p.name)}


async def two_monitors(work: Path, broker: Mosquitto, seconds: float) -> dict[str, Any]:
    """Item 5: the README's multi-monitor recipe: one prefix, each monitor its own state_dir."""
    sub = MqttCollector(broker.host, broker.port, ("site/events",))
    await sub.start()
    procs, jsonls = {}, {}
    for cam in ("east", "west"):
        cfg = _config(work / f"{cam}.yaml", camera=cam, prefix="site", broker=broker, state=work / f"state-{cam}")
        jsonls[cam] = work / f"{cam}.jsonl"
        procs[cam] = _start(cfg, work / f"{cam}.log", jsonls[cam])
        await asyncio.sleep(0.5)
    try:
        await asyncio.sleep(seconds)
    finally:
        rcs = {cam: _stop(p) for cam, p in procs.items()}
        await asyncio.sleep(1.0)
        await sub.stop()
    got = _received(sub, "site/events")
    out: dict[str, Any] = {"rc": rcs}
    for cam in procs:
        want = _expected(jsonls[cam])
        out[cam] = {"expected": len(want), "published": len(set(want) & set(got))}
        text = (work / f"{cam}.log").read_text(errors="replace")
        out[cam]["errors"] = [ln[-120:] for ln in text.splitlines() if "in use" in ln or "error:" in ln][:2]
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="corevad-redteam-durability-") as tmp:
        work = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(work / "xdg")  # the shared default state folder, private here
        broker = Mosquitto(work / "mosquitto")
        broker.start()
        try:
            return {"count": count_drift(work),
                    "full": await failing_disk(work, broker, "full", args.seconds),
                    "dead": await failing_disk(work, broker, "dead", args.seconds),
                    "corrupt": await corrupt_outbox(work, broker),
                    "two_monitors": await two_monitors(work, broker, args.seconds)}
        finally:
            broker.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="How long each fault lasts (default 8).")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("red_team_durability: needs root (it mounts a tmpfs and an ext4 image)", file=sys.stderr)
        return 2
    r = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return 0
    f, d, c, t, n = r["full"], r["dead"], r["corrupt"], r["two_monitors"], r["count"]

    def disk(x: dict[str, Any]) -> str:
        return (f"exit {x['rc']}; {x['false_broker_outages']} false 'broker unreachable'; negative count: "
                f"{x['negative_len']}; shutdown claimed {x['shutdown_claims_kept']} kept, outbox holds "
                f"{x['rows_in_outbox_after']}; alerts stored {x['alerts_stored']} of {x['alerts_expected']}; "
                f"{x['tracebacks']} traceback(s)")

    rows = [
        ("1-3 outbox+store disk full, then freed", f"{f['events_published']} / {f['events_expected']}", disk(f)),
        ("1-2 outbox+store disk dies (EIO)", f"{d['events_published']} / {d['events_expected']}", disk(d)),
        ("2 outbox count on failed commits (full disk)", "-",
         f"{n['failed_commits']} failed commits; count off the file by up to {n['max_drift']}; lowest count "
         f"{n['lowest_count']}; negative len(): {n['negative_len']}"),
        ("4 damaged outbox at start", f"{c['events_published']} / {c['events_expected']}",
         f"check exit {c['check_rc']} ({c['check_says'][:70]}); run exit {c['run_rc']}; set aside: "
         f"{', '.join(c['set_aside']) or 'none'}"),
        ("5 two monitors, one prefix, own state_dir",
         f"{t['east']['published'] + t['west']['published']} / {t['east']['expected'] + t['west']['expected']}",
         f"exit {t['rc']}; " + "; ".join(f"{cam}: {t[cam]['published']}/{t[cam]['expected']} {t[cam]['errors']}"
                                         for cam in ("east", "west"))),
    ]
    width = max(len(a) for a, _, _ in rows)
    print(f"{'scenario':<{width}}  {'events published / expected':<28}  outcome")
    for a, b, c_ in rows:
        print(f"{a:<{width}}  {b:<28}  {c_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
