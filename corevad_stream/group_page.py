"""`corevad-stream web`: the review page of a whole group of monitors, in a process with no cameras and no model.

Cameras and live updates come from the MQTT bus (bus_view.BusView: every monitor publishes there already), the
alert history from the group's event store, the page and its guards (Host check, basic auth, same-origin
POSTs) from the same HttpServer a monitor runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .bus_view import BusView, stale_after
from .config.web_only import WebConfig
from .errors import ConfigError
from .http import HttpServer, LiveFeed
from .store import StoreLocation

log = logging.getLogger(__name__)

__all__ = ["serve", "store_location"]


def store_location(cfg: WebConfig) -> StoreLocation | None:
    """The history to read: the group's PostgreSQL database (store.url) or a sqlite file (None: store.enabled is
    false). A sqlite file must exist: a page pointed at the wrong path would otherwise show an empty history as
    if nothing had happened. The PostgreSQL password is read now (one line naming the field when missing)."""
    if not cfg.store.enabled:
        return None
    location = cfg.store.location(cfg.runtime.state_path(), cfg.mqtt.prefix)
    if location.path is not None and not location.path.is_file():
        raise ConfigError(f"store.path: no event store at {location.path} (point store.path or store.url at the "
                          "monitors' store, or set store.enabled: false for a live-only page)")
    return location


async def serve(cfg: WebConfig, *, stop: asyncio.Event, on_ready: Callable[[HttpServer, BusView], None] | None = None
                ) -> None:
    """Serve the group page until `stop` is set."""
    m = cfg.metrics
    if not m.enabled:
        raise ConfigError("metrics.enabled: false leaves `corevad-stream web` nothing to serve")
    history = store_location(cfg)
    pw = m.password()
    feed = LiveFeed()
    try:
        view = BusView(mqtt=cfg.mqtt, feed=feed, stale_after_s=stale_after(cfg.runtime.stats_interval_s))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    async with feed, view, HttpServer(
            host=m.host, port=m.port, render_metrics=view.render_metrics, cameras=view.camera_overview,
            model=view.model_overview, store=history, feed=feed, username=m.username,
            password=pw.get_secret_value() if pw is not None else None, allowed_hosts=m.allowed_hosts) as server:
        log.info("group page on http://%s:%d/ : cameras live from %s:%d %s/#, history from %s", m.host, server.port,
                 view.address.host, view.address.port, cfg.mqtt.prefix,
                 history.describe() if history is not None else "nowhere (store.enabled: false)")
        if on_ready is not None:
            on_ready(server, view)
        await stop.wait()
