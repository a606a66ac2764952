"""`corevad-stream`: run the monitor on a YAML config (plus the replay commands from replay_cli)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from corevad.errors import CorevadError, ModelError
from corevad.optional import MissingExtraError

from . import replay_cli
from .demo import DEFAULT_VIDEOS, DEMO_PREFIX
from .errors import ConfigError, StreamError
from .preflight import preflight
from .redact import install_redaction, redact

if TYPE_CHECKING:
    from .config import StreamConfig

log = logging.getLogger("corevad_stream")


def _setup_logging(level: str, console: Console) -> Callable[[], None]:
    """Install our handler on the root logger; return a function that takes it off again."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Chatty libraries: the embedded broker's state machine logs every client transition at INFO.
    for name in ("transitions", "amqtt", "httpx"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    install_redaction(root)

    def restore() -> None:  # main() may run in-process (tests): leave logging as it was
        root.removeHandler(handler)
        root.setLevel(old_level)

    return restore


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if getattr(args, "tiny_model", False):
        overrides["model"] = {"tiny": True}
    if args.jsonl:
        overrides["jsonl"] = {"path": args.jsonl}
    if args.metrics_port is not None:
        overrides["metrics"] = {"port": args.metrics_port}
    return overrides


async def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .probes import first_missing_extra

    cfg = load_config(args.config, overrides=_overrides(args))
    if (missing := first_missing_extra(cfg)) is not None:
        raise missing  # one line naming the extra (--tiny-model on the base install), not a traceback
    preflight(cfg, source=str(args.config))  # before any model loads: what check says is what run meets
    return await _monitor(cfg, args)


async def _demo(args: argparse.Namespace) -> int:
    from .config import config_from_dict, merge_mappings
    from .demo import demo_config, find_responses, have_text_encoder

    responses = find_responses(args.responses)
    text = have_text_encoder() and not args.labels_only
    data, how = demo_config(responses, args.video or list(DEFAULT_VIDEOS), speed=args.speed,
                            mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, prefix=args.prefix,
                            text_context=text, metrics_port=9108 if args.metrics_port is None else args.metrics_port,
                            state=args.state_dir)
    cfg = config_from_dict(merge_mappings(data, _overrides(args)), source="demo")
    preflight(cfg, source="demo")
    log.info("demo: %d camera(s) replaying recorded InternVL2-8B answers from %s at %gx real time; %s; "
             "scoring %s", len(cfg.cameras), responses, args.speed, how,
             "with text-anchored context" if text else "from labels only (pip install 'corevad[text]' for context)")
    log.info("watch it: mosquitto_sub -h %s -p %d -t '%s/#' -v", args.mqtt_host, args.mqtt_port, args.prefix)
    log.info("demo history (its own, apart from any real monitor's): %s; delete that folder to clear it",
             cfg.runtime.state_path())
    return await _monitor(cfg, args, stay=args.stay)


async def _monitor(cfg: StreamConfig, args: argparse.Namespace, *, stay: bool = False) -> int:
    """Run the App until Ctrl-C/SIGTERM, --duration, or every camera ended; with stay, a run that ended by
    itself keeps the page and API up (the history browsable) until Ctrl-C/SIGTERM."""
    from .app import App
    from .live import show
    from .models import TINY_NOTICE

    console = Console(stderr=True)
    notice = None
    if cfg.model.tiny:
        notice = "TINY RANDOM MODEL - explanations are meaningless"
        console.print(f"[bold white on red] {TINY_NOTICE} [/]")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on every platform, nor outside the main thread (in-process use from a thread).
        with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with App(cfg) as app:
        # The live table when asked for and on a terminal; the periodic plain stats line otherwise
        # (--no-live only turns the table off, never the stats line).
        live_console = console if not args.no_live else Console(stderr=True, force_terminal=False)
        viewer = asyncio.create_task(
            show(app, console=live_console, notice=notice, plain_every=cfg.runtime.stats_interval_s),
            name="corevad[live].view")
        try:
            if args.duration:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(app.run_until(stop), args.duration)
            else:
                await app.run_until(stop)
            if stay and not stop.is_set():
                viewer.cancel()  # the table would only repeat the final state; the log line says what is up
                where = (f"on http://{cfg.metrics.host}:{app.metrics_server.port}/" if app.metrics_server
                         else "(no page: metrics.enabled is false)")
                log.info("the replay has ended; the review page stays up %s until Ctrl-C", where)
                await stop.wait()
        finally:
            viewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await viewer
            log.info("shutting down: flushing in-flight segments, publishing offline")
        failed = app.failed_cameras()
    if notice:
        console.print(f"[bold white on red] {TINY_NOTICE} [/]")
    if failed and not stop.is_set():
        log.error("camera(s) %s stopped without a valid stream; see their status reasons above", ", ".join(failed))
        return 1
    return 0


async def _web(args: argparse.Namespace) -> int:
    """The group page: no cameras, no model; until Ctrl-C/SIGTERM (or --duration)."""
    from .config.web_only import load_web_config
    from .group_page import serve

    cfg = load_web_config(args.config, overrides=None if args.metrics_port is None
                          else {"metrics": {"port": args.metrics_port}})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    await serve(cfg, stop=stop)
    return 0


def _check(args: argparse.Namespace) -> int:
    """One line per part run will touch (ok / warning / error, probed for real and bounded in time);
    exit 2 when any is an error, with the errors repeated on stderr."""
    from .config import load_config
    from .probes import Level, check_all

    cfg = load_config(args.config, overrides=_overrides(args))
    findings = check_all(cfg, timeout_s=args.timeout)
    for f in findings:
        print(f.line(), flush=True)
    errors = [f for f in findings if f.level is Level.ERROR]
    warnings = sum(f.level is Level.WARNING for f in findings)
    if errors:
        print(f"{args.config}: {len(errors)} error(s), {warnings} warning(s):", file=sys.stderr)
        for f in errors:
            print(f"  {f.item}: {redact(f.message)}", file=sys.stderr)
        return 2
    print(f"{args.config}: OK ({len(cfg.enabled_cameras())} camera(s): "
          f"{', '.join(c.name + ' ' + c.safe_url for c in cfg.enabled_cameras())})"
          + (f"; {warnings} warning(s) above" if warnings else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corevad-stream", description="Watch cameras for anomalies with a "
                                     "vision-language model and publish alerts (MQTT, JSONL, Prometheus); replay "
                                     "benchmarks through the same path.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Watch the configured cameras and publish alerts.")
    run.add_argument("-c", "--config", type=Path, required=True, help="YAML config (examples: configs/).")
    run.add_argument("--tiny-model", action="store_true",
                     help="Use tiny RANDOM models (no weights needed); explanations are meaningless.")
    _monitor_options(run)
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))
    demo = sub.add_parser("demo", help="Real recorded InternVL2-8B answers of UCF-Crime videos as live cameras: "
                                       "real alerts and explanations without a GPU or weights.")
    demo.add_argument("--responses", type=Path, help="The authors' VLM_responses_LRC_ucf.json (default: found in "
                                                     "../shared/data when present).")
    demo.add_argument("--video", action="append", help=f"A video to replay as a camera (repeatable; default "
                                                       f"{', '.join(DEFAULT_VIDEOS)}).")
    demo.add_argument("--speed", type=float, default=1.0, help="Pace: 1 = real time (default), 10 = ten times "
                                                               "faster.")
    demo.add_argument("--mqtt-host", default="127.0.0.1", help="MQTT broker; an embedded one is started there "
                                                                "when none answers (default 127.0.0.1).")
    demo.add_argument("--mqtt-port", type=int, default=1883, help="MQTT port (default 1883).")
    demo.add_argument("--prefix", default=DEMO_PREFIX, help=f"MQTT topic prefix (default {DEMO_PREFIX}: apart "
                                                            "from a real monitor's `corevad`).")
    demo.add_argument("--state-dir", type=Path, help="The demo's own event store, open-alert record and outbox "
                                                     "(default <state dir>/demo, e.g. ~/.local/state/corevad/demo; "
                                                     "delete it to clear the demo's history).")
    demo.add_argument("--stay", action="store_true", help="Keep the review page up after the replay ends, "
                                                          "until Ctrl-C.")
    demo.add_argument("--labels-only", action="store_true", help="Score labels only, even when the sentence "
                                                                 "encoder is installed.")
    _monitor_options(demo)
    demo.set_defaults(func=lambda a: asyncio.run(_demo(a)))
    check = sub.add_parser("check", help="Validate a config and try everything run will touch (cameras: one "
                                         "frame; broker: CONNACK; model server: health and a 1-token answer; "
                                         "extras; store, state folder and outbox; secrets, files, ports), then "
                                         "exit: one ok / warning / error line each, exit 2 on any error.")
    check.add_argument("-c", "--config", type=Path, required=True, help="YAML config to check.")
    check.add_argument("--tiny-model", action="store_true", help="Check for run --tiny-model.")
    check.add_argument("--timeout", type=float, default=10.0, help="Seconds each probe may take (default 10).")
    check.set_defaults(func=_check, jsonl=None, metrics_port=None)
    web = sub.add_parser("web", help="The review page of a whole group of monitors, without cameras or a model: "
                                     "cameras live from the MQTT bus, history from the group's event store.")
    web.add_argument("-c", "--config", type=Path, required=True,
                     help="YAML with mqtt, store, metrics (and runtime) sections, or a monitor's whole config.")
    web.add_argument("--metrics-port", type=int, help="Override metrics.port (0 = any free port).")
    web.add_argument("--duration", type=float, help="Stop after this many seconds (default: until stopped).")
    web.set_defaults(func=lambda a: asyncio.run(_web(a)))
    replay_cli.add_commands(sub)
    return parser


def _monitor_options(p: argparse.ArgumentParser) -> None:
    """The options `run` and `demo` share (both end in _monitor)."""
    p.add_argument("--no-live", action="store_true", help="No live table (the plain stats line stays).")
    p.add_argument("--jsonl", type=Path, help="Also write every message to this JSONL file.")
    p.add_argument("--metrics-port", type=int, help="Override metrics.port (default 9108; 0 = any free port).")
    p.add_argument("--duration", type=float, help="Stop after this many seconds (default: run until stopped "
                                                  "or every camera ended).")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    restore_logging = _setup_logging(args.log_level, console)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        console.print(f"[red]config error:[/] {escape(redact(str(exc)))}", markup=True, highlight=False, soft_wrap=True)
        return 2
    except MissingExtraError as exc:  # an optional package (torch, amqtt, ...) is not installed
        console.print(f"[red]missing package:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        return 1
    except CorevadError as exc:  # models: weights missing, hub unreachable, bad responses file ...
        console.print(f"[red]model error:[/] {escape(redact(str(exc)))}", markup=True, highlight=False, soft_wrap=True)
        if isinstance(exc, ModelError):
            console.print("(no weights on this machine? `--tiny-model` runs the whole path with tiny random "
                          "models, whose explanations are meaningless)", highlight=False, soft_wrap=True)
        return 1
    except StreamError as exc:  # broker cannot listen, outbox unusable, ...
        console.print(f"[red]error:[/] {escape(redact(str(exc)))}", markup=True, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        restore_logging()


if __name__ == "__main__":
    sys.exit(main())
