"""The terminal view of `corevad-stream run`: a rich live table on a TTY, periodic plain log lines otherwise."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)


def camera_table(app: App, *, notice: str | None = None) -> Table:
    """One row per camera: fps in, segments/s, lag, drops, model state, last score, state, last explanation."""
    model = app.model_health
    model_txt = {"ok": "[green]ok[/]", "down": "[bold white on red] MODEL DOWN [/]"}.get(
        model.state.value, f"[yellow]{model.state.value}[/]")
    title = f"corevad-stream  model: {model_txt}" + (f" ({model.reason})" if model.reason else "") + (
        f"  [bold red]{notice}[/]" if notice else "")
    table = Table(title=title, expand=True)
    for col, kw in (("camera", {}), ("status", {}), ("fps in", {"justify": "right"}),
                    ("seg/s", {"justify": "right"}), ("lag s", {"justify": "right"}),
                    ("drops", {"justify": "right"}), ("unparsed", {"justify": "right"}),
                    ("no answer", {"justify": "right"}), ("model", {}),
                    ("score", {"justify": "right"}), ("state", {}), ("last explanation", {"ratio": 1})):
        table.add_column(col, **kw)
    for name, c in app.counters.items():
        state = {"anomalous": "[bold red]ANOMALOUS[/]", "unknown": "[yellow]unknown[/]"}.get(c.state, c.state)
        cam_model = c.model_state if c.model_state != "down" else "[bold red]down[/]"
        status = c.status.value if not c.reason else f"{c.status.value}: {c.reason}"
        table.add_row(name, status, f"{c.fps_in:.1f}", f"{c.segments_per_s:.2f}", f"{c.queue_lag_s:.2f}",
                      str(c.drops), str(c.unparsed), str(c.unanswered), cam_model,
                      "-" if c.last_score is None else f"{c.last_score:.3f}",
                      state, c.last_explanation or "")
    return table


def plain_line(app: App) -> str:
    m = app.model_health
    parts = [f"model: {m.state.value}" + (f" ({m.reason})" if m.reason else "")]
    for name, c in app.counters.items():
        score = "-" if c.last_score is None else f"{c.last_score:.3f}"
        parts.append(f"{name}: {c.status.value} fps={c.fps_in:.1f} seg/s={c.segments_per_s:.2f} "
                     f"lag={c.queue_lag_s:.2f}s drops={c.drops} unparsed={c.unparsed} no_answer={c.unanswered} "
                     f"model={c.model_state} score={score} {c.state}")
    return " | ".join(parts)


async def show(app: App, *, console: Console | None = None, notice: str | None = None,
               interval: float = 0.5, plain_every: float = 10.0) -> None:
    """Refresh until cancelled: a live table on a terminal, one log line every plain_every s otherwise."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        while True:
            await asyncio.sleep(plain_every)
            log.info("%s", plain_line(app))
    with Live(camera_table(app, notice=notice), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(camera_table(app, notice=notice))
