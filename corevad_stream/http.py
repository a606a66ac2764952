"""The monitor's HTTP server (Starlette on uvicorn): /metrics and the review API, on one port.

Why one server: one port and one security rule (loopback without credentials; anything else needs HTTP
basic auth, refused at config validation otherwise). Routes:

    GET  /                             the review page (package data corevad_stream/data/web; /static/...)
    GET  /metrics                      Prometheus exposition
    GET  /api/cameras                  live status, model state, state, last score, thresholds per camera
    GET  /api/model                    the model's state (ok|degraded|down|unknown), reason, since when
    GET  /api/cameras/{name}/scores    the camera's stored scores since `since` (default: the last 5 min)
    GET  /api/events                   alerts from the event store: camera, since, until, state
                                       (active|ended), limit (1..1000), before (an alert id: the page after
                                       it, the cheap way to page deep), offset (<= 10,000); newest first
    GET  /api/events/{id}              one alert with its score curve around it (60 s either side)
    GET  /api/events/{id}/snapshot     the alert's snapshot JPEG (the peak segment's middle frame)
    POST /api/events/{id}/ack          acknowledge an alert (stored before the reply); JSON from this origin only
    GET  /api/stream                   server-sent events: every alert event, score, snapshot, state, status
                                       and model change

Every request passes, outermost first: security headers on the response (CSP, no framing, nosniff, no
referrer); a Host-header check (only the bind address, localhost names on a loopback bind, and
`metrics.allowed_hosts`: DNS rebinding cannot reach the API through a name of the attacker's); basic auth
when configured; and for POST a same-origin check (Origin / Sec-Fetch-Site) plus `Content-Type:
application/json`, which no cross-origin form or `no-cors` fetch can send (browsers resend cached basic-auth
credentials, so auth alone does not stop CSRF).

Why the store routes have their own limit and threads: a burst of API reads once queued behind snapshot
encoding in the default thread pool and delayed alerts by seconds. Store reads and their JSON encoding run
on the server's own small pool (corevad[http].api); at most API_CONCURRENT of them run and API_QUEUED wait,
each for at most API_WAIT_S; beyond that a request gets 503 with Retry-After instead of a place in an
unbounded queue. Deep pages use `before=<id>` (an index range), not a large OFFSET (a scan).

Camera URLs never leave redacted form; the store holds no URLs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from corevad.threads import DaemonPool

from .errors import ConfigError
from .messages import Message, kinds_where
from .security import is_loopback
from .store import EventStore, StoreError, StoreLocation, open_store

if TYPE_CHECKING:  # starlette is imported lazily at run time (only the API needs it)
    from starlette.responses import Response

log = logging.getLogger(__name__)
T = TypeVar("T")

LIVE_KINDS = kinds_where("feed")
# What a score message carries to the page: enough for a sparkline (descriptions stay in the store).
_SCORE_FIELDS = ("index", "start", "end", "score", "available", "label")
WEB_DIR = "web"  # package data folder of the page (corevad_stream/data/web)
_WEB_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
              ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_WEB_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}")  # a plain file name: no paths, no NUL

# The API's bounds (see the module docstring). One reader thread: building rows and JSON holds the GIL, and
# more threads took it from the event loop. Measured with tools/bench_api_burst.py (100 readers, 100,000
# alerts, 2 cores): alert latency p99 under the burst 1.8 s with 4 threads, 0.39 s with 1, which also
# answered more reads (729 vs 556 in 40 s).
API_CONCURRENT = 1
API_QUEUED = 32
API_WAIT_S = 5.0
STORE_RETRY_S = 10.0  # a store that could not be opened (PostgreSQL down) is tried again at most this often
MAX_LIMIT = 1000
MAX_OFFSET = 10_000  # deeper pages: before=<id>
# The page loads its own script, stylesheet and images and talks only to this server; nothing may frame it.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),  # snapshots cannot be embedded by another site
)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost")
_WILDCARD_BINDS = ("", "0.0.0.0", "::")


class LiveFeed:
    """A sink that fans published messages out to SSE subscribers (bounded queues, oldest dropped).

    It also keeps each camera's latest snapshot with the id of the alert it shows: the page asks for an
    alert's picture as soon as it hears of it, before the event store's writer may have stored it.
    A None in a subscriber's queue means "the stream ends" (end_streams, on shutdown)."""

    name = "live-feed"

    def __init__(self, *, per_client: int = 1000) -> None:
        self.per_client = per_client
        self._clients: set[asyncio.Queue[Message | None]] = set()
        self._snapshots: dict[str, tuple[str, bytes]] = {}  # camera -> (alert id, JPEG)

    def snapshot(self, alert_id: str) -> bytes | None:
        return next((jpeg for aid, jpeg in self._snapshots.values() if aid == alert_id), None)

    async def __aenter__(self) -> LiveFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.end_streams()

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
            _put_dropping_oldest(q, message)  # a slow client loses its oldest update, never stalls the monitor

    def subscribe(self) -> asyncio.Queue[Message | None]:
        q: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=self.per_client)
        self._clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Message | None]) -> None:
        self._clients.discard(q)

    def end_streams(self) -> None:
        """Tell every subscriber its stream ends (its response completes instead of being cancelled)."""
        for q in list(self._clients):
            _put_dropping_oldest(q, None)
        self._clients.clear()


def _put_dropping_oldest(q: asyncio.Queue[T], item: T) -> None:
    if q.full():
        q.get_nowait()
    q.put_nowait(item)


class ApiBusy(Exception):
    """The API's readers are all busy and its waiting room is full (or the wait ran out): answer 503."""


class ApiLimiter:
    """At most `concurrent` requests run and `queued` wait, each at most `wait_s`; others are refused."""

    def __init__(self, *, concurrent: int = API_CONCURRENT, queued: int = API_QUEUED,
                 wait_s: float = API_WAIT_S) -> None:
        if concurrent < 1 or queued < 0 or not wait_s > 0:
            raise ValueError(f"ApiLimiter: concurrent >= 1, queued >= 0, wait_s > 0 (got {concurrent}, {queued}, "
                             f"{wait_s})")
        self.concurrent, self.queued, self.wait_s = concurrent, queued, wait_s
        self._sem = asyncio.Semaphore(concurrent)
        self._waiting = 0
        self.refused = 0  # requests answered 503, for the log and the benchmark

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._sem.locked() and self._waiting >= self.queued:
            self.refused += 1
            raise ApiBusy("the API is busy")
        self._waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.wait_s)
        except TimeoutError:
            self.refused += 1
            raise ApiBusy("the API is busy") from None
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._sem.release()


def allowed_host_names(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host-header names the server answers (lower case, no port); None = any ('*' in extra).

    The bind address; the localhost names for a loopback bind; for a wildcard bind (0.0.0.0, ::) the
    machine's host name and any IP literal (an address typed by the user cannot be rebound by DNS: only a
    NAME can point an attacker's page at this server); plus `extra` (metrics.allowed_hosts)."""
    names = {_host_name(h) for h in extra}
    if "*" in names:
        return None
    bind = _host_name(bind)
    names.add(bind)
    if bind in _WILDCARD_BINDS:
        names.update((_host_name(socket.gethostname()), *_LOOPBACK_NAMES))
    elif is_loopback(bind):
        names.update(_LOOPBACK_NAMES)
    names.discard("")
    return frozenset(names)


def _host_name(host: str) -> str:
    """`Host` header or config value -> lower-case name without port, brackets or trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HttpServer:
    """`async with HttpServer(...) as server:` serves until the block ends; server.port is the bound port."""

    def __init__(self, *, host: str, port: int, render_metrics: Callable[[], bytes],
                 cameras: Callable[[], list[dict[str, Any]]], model: Callable[[], dict[str, Any]],
                 store: StoreLocation | None, feed: LiveFeed | None,
                 username: str | None = None, password: str | None = None,
                 allowed_hosts: Iterable[str] = (), api_concurrent: int = API_CONCURRENT,
                 api_queued: int = API_QUEUED, api_wait_s: float = API_WAIT_S) -> None:
        if (username is None) != (password is None) or password == "":
            # config.MetricsConfig refuses these with a config error; a direct caller gets the same rule.
            raise ValueError("HttpServer: give both username and a non-empty password, or neither")
        self.host = host
        self.port = port
        self._render_metrics = render_metrics
        self._cameras = cameras
        self._model = model
        self._store_at = store
        self._feed = feed
        self._auth = (base64.b64encode(f"{username}:{password}".encode()).decode()
                      if username is not None and password is not None else None)
        self._hosts = allowed_host_names(host, allowed_hosts)
        self._wildcard = _host_name(host) in _WILDCARD_BINDS
        self.limiter = ApiLimiter(concurrent=api_concurrent, queued=api_queued, wait_s=api_wait_s)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._store: EventStore | None = None
        self._store_lock = threading.Lock()
        self._store_tried = -math.inf
        self._store_error = ""
        self._pool: DaemonPool | None = None
        self._closing = False
        self.cross_site_refused = 0  # state-changing requests refused by the same-origin JSON rule

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> HttpServer:
        import uvicorn

        # Daemon threads: a read stuck on a slow disk must not keep a stopped monitor alive.
        self._pool = DaemonPool(self.limiter.concurrent, name="corevad[http].api")
        if self._store_at is not None:  # on the API's own threads: never on the loop, never in the default pool
            await self._run(self._try_open_store)
        config = uvicorn.Config(self._asgi(), host=self.host, port=self.port, log_level="warning", lifespan="off",
                                access_log=False, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the monitor owns SIGINT/SIGTERM
        self._task = asyncio.create_task(self._server.serve(), name="corevad[http].serve")
        while not self._server.started:
            if self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                self._pool.shutdown(wait=False)
                raise ConfigError(f"metrics.port: cannot listen on {self.host}:{self.port} ({exc or 'exited'}); "
                                  "set metrics.port (or --metrics-port) to a free port, 0 = any")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("review page on http://%s:%d/ (API /api/..., Prometheus /metrics)", self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Live streams end first, so uvicorn finds completed responses instead of cancelling them (a browser
        # left open printed an ASGI CancelledError traceback on every stop).
        self._closing = True
        if self._feed is not None:
            self._feed.end_streams()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (TimeoutError, asyncio.CancelledError, SystemExit):
                self._task.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            self._store.close()

    async def _run(self, fn: Callable[[], T]) -> T:
        """Blocking store work on the API's own threads (never the default pool the rest of the monitor uses)."""
        assert self._pool is not None, "HttpServer used outside `async with`"
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    # -- the ASGI app ------------------------------------------------------------------------------------
    def _asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request
        from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
        from starlette.routing import Route

        server = self
        auth = self._auth
        hosts = self._hosts
        wildcard = self._wildcard

        class Guard:
            """Pure ASGI middleware (streams pass through untouched): security headers on every response, then
            the Host check, basic auth and the same-origin JSON rule for requests that change state."""

            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    await self.app(scope, receive, send)
                    return

                async def send_with_headers(message: Any) -> None:
                    if message["type"] == "http.response.start":
                        message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
                    await send(message)

                headers = {k.lower(): v for k, v in scope["headers"]}
                deny = self.refusal(scope, headers)
                if deny is not None:
                    await deny(scope, receive, send_with_headers)
                    return
                await self.app(scope, receive, send_with_headers)

            @staticmethod
            def refusal(scope: Any, headers: dict[bytes, bytes]) -> Response | None:
                host = _host_name(headers.get(b"host", b"").decode("latin-1"))
                if hosts is not None and host not in hosts and not (wildcard and _is_ip(host)):
                    return PlainTextResponse("unknown Host header: add the name to metrics.allowed_hosts\n", 421)
                if auth is not None:
                    given = headers.get(b"authorization", b"")
                    if not hmac.compare_digest(given, f"Basic {auth}".encode()):
                        return PlainTextResponse("unauthorised\n", 401,
                                                 headers={"WWW-Authenticate": "Basic realm=corevad"})
                if scope["method"] not in ("GET", "HEAD"):
                    refused = _cross_site_refusal(scope, headers)
                    if refused is not None:
                        server.cross_site_refused += 1
                    return refused
                return None

        def limited(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
            @functools.wraps(handler)
            async def run(request: Request) -> Response:
                try:
                    async with self.limiter.slot():
                        return await handler(request)
                except ApiBusy:
                    return JSONResponse({"error": "the API is busy; try again shortly"}, 503,
                                        headers={"Retry-After": "1"})
                except StoreError as exc:  # the database is down or restarting: say so, never a blank 500
                    log.warning("API %s: %s", request.url.path, exc)
                    return JSONResponse({"error": f"the event store cannot be read now: {exc}"}, 503,
                                        headers={"Retry-After": "5"})

            return run

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

        @limited
        async def camera_scores(request: Request) -> Response:
            store = self._open_store()
            if store is None:
                return JSONResponse([])
            try:
                since = _float(request.query_params.get("since"), "since")
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            now = time.time()
            start = max(since if since is not None else now - 300.0, now - 3600.0)  # at most an hour
            name = request.path_params["name"]
            return _json(await self._run(lambda: _dumps(store.scores(name, start, now + 60.0))))

        @limited
        async def snapshot(request: Request) -> Response:
            alert_id = request.path_params["id"]
            store = self._open_store()
            jpeg = None if store is None else await self._run(lambda: store.snapshot(alert_id))
            if jpeg is None and self._feed is not None:
                jpeg = self._feed.snapshot(alert_id)
            if jpeg is None:
                return JSONResponse({"error": "no snapshot for this alert"}, 404)
            return Response(jpeg, media_type="image/jpeg")

        @limited
        async def events(request: Request) -> Response:
            store = self._open_store()
            if store is None:
                return JSONResponse({"error": "the event store is off (store.enabled: false)"}, 404)
            q = request.query_params
            try:
                state = q.get("state")
                if state not in (None, "active", "ended"):
                    raise ValueError("state: must be active or ended")
                query: dict[str, Any] = {"camera": q.get("camera"), "since": _float(q.get("since"), "since"),
                                         "until": _float(q.get("until"), "until"),
                                         "active": None if state is None else state == "active",
                                         "limit": _int(q.get("limit"), "limit", default=50, lo=1, hi=MAX_LIMIT),
                                         "offset": _int(q.get("offset"), "offset", default=0, lo=0, hi=MAX_OFFSET,
                                                        hint="; page deeper with before=<the last id of a page>"),
                                         "before": q.get("before")}
                body = await self._run(lambda: _dumps(store.alerts(**query)))
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return _json(body)

        @limited
        async def event(request: Request) -> Response:
            store = self._open_store()
            alert_id = request.path_params["id"]

            def read(store: EventStore) -> bytes | None:
                alert = store.alert(alert_id)
                if alert is None:
                    return None
                end = alert["end_time"] or alert["updated_at"]
                alert["scores"] = store.scores(alert["camera"], alert["start_time"] - 60.0, end + 60.0)
                return _dumps(alert)

            body = None if store is None else await self._run(functools.partial(read, store))
            if body is None:
                return JSONResponse({"error": "no such alert"}, 404)
            return _json(body)

        @limited
        async def ack(request: Request) -> Response:
            store = self._open_store()
            alert_id = request.path_params["id"]
            ok = store is not None and await self._run(lambda: store.acknowledge(alert_id))
            return JSONResponse({"acknowledged": True} if ok else {"error": "no such alert"}, 200 if ok else 404)

        async def stream(request: Request) -> Response:
            if self._feed is None:
                return JSONResponse({"error": "no live feed"}, 404)
            if self._closing:
                return JSONResponse({"error": "the monitor is stopping"}, 503, headers={"Retry-After": "5"})
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
                        if m is None:  # the server stops: end the response (the page reconnects later)
                            return
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
        return Starlette(routes=routes, middleware=[Middleware(Guard)])

    def _open_store(self) -> EventStore | None:
        """The store (opened at start on a thread). When that failed (PostgreSQL down): StoreError (the routes
        answer 503), and a new try on the API's threads at most every STORE_RETRY_S, never on the loop."""
        if self._store_at is None:
            return None
        with self._store_lock:
            if self._store is not None:
                return self._store
            if time.monotonic() - self._store_tried >= STORE_RETRY_S and self._pool is not None:
                self._store_tried = time.monotonic()
                self._pool.submit(self._try_open_store)
            raise StoreError(f"event store {self._store_at.describe()}: not reachable ({self._store_error})")

    def _try_open_store(self) -> None:
        assert self._store_at is not None
        self._store_tried = time.monotonic()
        try:
            store = open_store(self._store_at)
        except StoreError as exc:
            self._store_error = str(exc)
            log.error("review API: %s", exc)
            return
        with self._store_lock:
            self._store = store


def _cross_site_refusal(scope: Any, headers: dict[bytes, bytes]) -> Response | None:
    """None when a state-changing request is JSON from this server's own page (or from a non-browser client,
    which sends neither Origin nor Sec-Fetch-Site); otherwise the 403/415 response."""
    from starlette.responses import PlainTextResponse

    site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
    if site and site not in ("same-origin", "none"):
        return PlainTextResponse(f"cross-site request refused (Sec-Fetch-Site: {site})\n", 403)
    origin = headers.get(b"origin")
    if origin is not None:
        own = f"{scope.get('scheme', 'http')}://{headers.get(b'host', b'').decode('latin-1')}".lower()
        if origin.decode("latin-1").lower().rstrip("/") != own:
            return PlainTextResponse("cross-origin request refused (Origin is not this server)\n", 403)
    media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if media != b"application/json":
        return PlainTextResponse("send Content-Type: application/json\n", 415)
    return None


def _dumps(value: Any) -> bytes:
    """JSON as Starlette's JSONResponse writes it, for encoding on the API's threads instead of the loop."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _json(body: bytes) -> Response:
    from starlette.responses import Response

    return Response(body, media_type="application/json")


def web_file(name: str) -> bytes | None:
    """A file of the page from package data; only plain names with a known suffix (no paths)."""
    if not _WEB_NAME.fullmatch(name) or Path(name).suffix not in _WEB_TYPES:
        return None
    from corevad.paths import data_file

    try:
        return data_file("corevad_stream", f"{WEB_DIR}/{name}").read_bytes()
    except (FileNotFoundError, OSError):
        return None


def _float(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{field}: not a number: {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{field}: not a finite number: {value!r}")
    return x


def _int(value: str | None, field: str, *, default: int, lo: int, hi: int, hint: str = "") -> int:
    if value is None:
        return default
    try:
        x = int(value)
    except ValueError:
        raise ValueError(f"{field}: not an integer: {value[:40]!r}") from None
    if not lo <= x <= hi:
        raise ValueError(f"{field}: must be {lo}..{hi}, got {value[:40]}{hint}")
    return x


__all__ = ["ApiLimiter", "HttpServer", "LiveFeed", "allowed_host_names"]
