"""The monitor's HTTP server (Starlette on uvicorn): /metrics and the review API, on one port.

Why one server: one port and one security rule (loopback without credentials; anything else needs HTTP
basic auth, refused at config validation otherwise). Routes:

    GET  /                             the review page (package data corevad_stream/data/web; /static/...)
    GET  /metrics                      Prometheus exposition
    GET  /api/cameras                  live status, model state, state, last score, thresholds per camera
    GET  /api/model                    the model's state (ok|degraded|down|unknown), reason, since when
    GET  /api/cameras/{name}/scores    the camera's stored scores since `since` (default: the last 5 min)
    GET  /api/events                   alerts from the event store: camera, since, until, state
                                       (active|ended), limit (<= 1000), offset; newest first
    GET  /api/events/{id}              one alert with its score curve around it (60 s either side)
    GET  /api/events/{id}/snapshot     the alert's snapshot JPEG (the peak segment's middle frame)
    POST /api/events/{id}/ack          acknowledge an alert (stored before the reply)
    GET  /api/stream                   server-sent events: every alert event, score, snapshot, state, status
                                       and model change

Camera URLs never leave redacted form; the store holds no URLs.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .messages import Message, kinds_where

log = logging.getLogger(__name__)

LIVE_KINDS = kinds_where("feed")
# What a score message carries to the page: enough for a sparkline (descriptions stay in the store).
_SCORE_FIELDS = ("index", "start", "end", "score", "available", "label")
WEB_DIR = "web"  # package data folder of the page (corevad_stream/data/web)
_WEB_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
              ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class LiveFeed:
    """A sink that fans published messages out to SSE subscribers (bounded queues, oldest dropped).

    It also keeps each camera's latest snapshot with the id of the alert it shows: the page asks for an
    alert's picture as soon as it hears of it, before the event store's writer may have stored it."""

    name = "live-feed"

    def __init__(self, *, per_client: int = 1000) -> None:
        self.per_client = per_client
        self._clients: set[asyncio.Queue[Message]] = set()
        self._snapshots: dict[str, tuple[str, bytes]] = {}  # camera -> (alert id, JPEG)

    def snapshot(self, alert_id: str) -> bytes | None:
        return next((jpeg for aid, jpeg in self._snapshots.values() if aid == alert_id), None)

    async def __aenter__(self) -> LiveFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._clients.clear()

    async def send(self, message: Message) -> None:
        if message.kind not in LIVE_KINDS:
            return
        message = message.serialised()  # the page reads JSON: typed records become their wire form here
        if message.kind == "snapshot" and isinstance(message.payload, bytes):
            if message.alert_id is None:
                return
            self._snapshots[message.camera or ""] = (message.alert_id, message.payload)
            message = Message("snapshot", {"alert_id": message.alert_id}, camera=message.camera)
        elif message.kind == "score" and isinstance(message.payload, dict):
            message = Message("score", {k: message.payload.get(k) for k in _SCORE_FIELDS}, camera=message.camera)
        for q in list(self._clients):
            if q.full():
                q.get_nowait()  # a slow client loses its oldest update, never stalls the monitor
            q.put_nowait(message)

    def subscribe(self) -> asyncio.Queue[Message]:
        q: asyncio.Queue[Message] = asyncio.Queue(maxsize=self.per_client)
        self._clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Message]) -> None:
        self._clients.discard(q)


class HttpServer:
    """`async with HttpServer(...) as server:` serves until the block ends; server.port is the bound port."""

    def __init__(self, *, host: str, port: int, render_metrics: Callable[[], bytes],
                 cameras: Callable[[], list[dict[str, Any]]], model: Callable[[], dict[str, Any]],
                 store_path: Path | None, feed: LiveFeed | None,
                 username: str | None = None, password: str | None = None) -> None:
        self.host = host
        self.port = port
        self._render_metrics = render_metrics
        self._cameras = cameras
        self._model = model
        self._store_path = store_path
        self._feed = feed
        self._auth = (base64.b64encode(f"{username}:{password}".encode()).decode()
                      if username is not None and password is not None else None)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._store: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> HttpServer:
        import uvicorn

        config = uvicorn.Config(self._asgi(), host=self.host, port=self.port, log_level="warning", lifespan="off",
                                access_log=False, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the monitor owns SIGINT/SIGTERM
        self._task = asyncio.create_task(self._server.serve(), name="corevad[http].serve")
        while not self._server.started:
            if self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                raise ConfigError(f"metrics.port: cannot listen on {self.host}:{self.port} ({exc or 'exited'}); "
                                  "set metrics.port (or --metrics-port) to a free port, 0 = any")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("review page on http://%s:%d/ (API /api/..., Prometheus /metrics)", self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (TimeoutError, asyncio.CancelledError, SystemExit):
                self._task.cancel()
        if self._store is not None:
            self._store.close()

    # -- the ASGI app ------------------------------------------------------------------------------------
    def _asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
        from starlette.routing import Route

        auth = self._auth

        class BasicAuth:
            """Pure ASGI middleware (streams pass through untouched): every route needs the credentials."""

            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "http" and auth is not None:
                    given = dict(scope["headers"]).get(b"authorization", b"")
                    if not hmac.compare_digest(given, f"Basic {auth}".encode()):
                        deny = PlainTextResponse("unauthorised\n", 401,
                                                 headers={"WWW-Authenticate": "Basic realm=corevad"})
                        await deny(scope, receive, send)
                        return
                await self.app(scope, receive, send)

        async def metrics(request: Request) -> Response:
            return Response(self._render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

        async def page(request: Request) -> Response:
            name = request.path_params.get("name", "index.html")
            body = web_file(name)
            if body is None:
                return PlainTextResponse("not found\n", 404)
            return Response(body, media_type=_WEB_TYPES[Path(name).suffix], headers={"Cache-Control": "no-cache"})

        async def cameras(request: Request) -> Response:
            return JSONResponse(self._cameras())

        async def model(request: Request) -> Response:
            return JSONResponse(self._model())

        async def camera_scores(request: Request) -> Response:
            store = self._open_store()
            if store is None:
                return JSONResponse([])
            try:
                since = _float(request.query_params.get("since"))
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            now = time.time()
            start = max(since if since is not None else now - 300.0, now - 3600.0)  # at most an hour
            rows = await asyncio.to_thread(store.scores, request.path_params["name"], start, now + 60.0)
            return JSONResponse(rows)

        async def snapshot(request: Request) -> Response:
            alert_id = request.path_params["id"]
            store = self._open_store()
            path = None if store is None else await asyncio.to_thread(store.snapshot_path, alert_id)
            if path is not None:
                return FileResponse(path, media_type="image/jpeg")
            jpeg = self._feed.snapshot(alert_id) if self._feed is not None else None
            if jpeg is None:
                return JSONResponse({"error": "no snapshot for this alert"}, 404)
            return Response(jpeg, media_type="image/jpeg")

        async def events(request: Request) -> Response:
            store = self._open_store()
            if store is None:
                return JSONResponse({"error": "the event store is off (store.enabled: false)"}, 404)
            q = request.query_params
            try:
                state = q.get("state")
                if state not in (None, "active", "ended"):
                    raise ValueError("state must be active or ended")
                rows = await asyncio.to_thread(
                    store.alerts, camera=q.get("camera"), since=_float(q.get("since")), until=_float(q.get("until")),
                    active=None if state is None else state == "active", limit=int(q.get("limit", 50)),
                    offset=int(q.get("offset", 0)))
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse(rows)

        async def event(request: Request) -> Response:
            store = self._open_store()
            alert = None if store is None else await asyncio.to_thread(store.alert, request.path_params["id"])
            if alert is None:
                return JSONResponse({"error": "no such alert"}, 404)
            end = alert["end_time"] or alert["updated_at"]
            alert["scores"] = await asyncio.to_thread(store.scores, alert["camera"], alert["start_time"] - 60.0,
                                                      end + 60.0)
            return JSONResponse(alert)

        async def ack(request: Request) -> Response:
            store = self._open_store()
            ok = store is not None and await asyncio.to_thread(store.acknowledge, request.path_params["id"])
            return JSONResponse({"acknowledged": True} if ok else {"error": "no such alert"}, 200 if ok else 404)

        async def stream(request: Request) -> Response:
            if self._feed is None:
                return JSONResponse({"error": "no live feed"}, 404)
            feed = self._feed
            q = feed.subscribe()

            async def body() -> AsyncIterator[bytes]:
                try:
                    yield b": corevad live feed\n\n"
                    while True:
                        try:
                            m = await asyncio.wait_for(q.get(), 15.0)
                        except TimeoutError:
                            yield b": keep-alive\n\n"  # proxies close idle streams
                            continue
                        data = {"kind": m.kind, "camera": m.camera, "payload": m.payload}
                        yield f"event: {m.kind}\ndata: {json.dumps(data)}\n\n".encode()
                finally:
                    feed.unsubscribe(q)

            return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

        routes = [Route("/", page), Route("/static/{name}", page), Route("/metrics", metrics),
                  Route("/api/cameras", cameras), Route("/api/model", model),
                  Route("/api/cameras/{name}/scores", camera_scores),
                  Route("/api/events", events), Route("/api/events/{id}", event),
                  Route("/api/events/{id}/snapshot", snapshot),
                  Route("/api/events/{id}/ack", ack, methods=["POST"]), Route("/api/stream", stream)]
        return Starlette(routes=routes, middleware=[Middleware(BasicAuth)])

    def _open_store(self) -> Any:
        if self._store_path is None:
            return None
        if self._store is None:
            from .store import EventStore

            self._store = EventStore(self._store_path)
        return self._store


def web_file(name: str) -> bytes | None:
    """A file of the page from package data; only plain names with a known suffix (no paths)."""
    if "/" in name or "\\" in name or name.startswith(".") or Path(name).suffix not in _WEB_TYPES:
        return None
    from corevad.paths import data_file

    try:
        return data_file("corevad_stream", f"{WEB_DIR}/{name}").read_bytes()
    except (FileNotFoundError, OSError):
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {value!r}")
    return x


__all__ = ["HttpServer", "LiveFeed"]
