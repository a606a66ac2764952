"""The event-store sink: every alert event, snapshot, status change and score into the event store (a sqlite
file or a PostgreSQL database, corevad_stream/store/).

Why a thread and a bounded queue: commits wait for the disk or the database server, and neither may ever
stall scoring. send() only enqueues; when the queue is full the message is dropped and counted (`dropped`).

Why retry: a disk that is full or failing, or a PostgreSQL server that is down or restarting, must not lose
history for good. A write the store refused for now (store.retryable: sqlite OperationalError, an OSError
writing a snapshot, a lost or refused PostgreSQL connection) waits, in order, with every later message, and
is tried again with backoff until it goes in; health() says `failing` since when, with the count of writes
waiting, so the stats, /metrics and the page can show it. A write that has had no answer for `stall_s`
(a frozen server) is reported the same way while it hangs. A write that can never succeed (a malformed
message) is logged and counted (`errors`) and skipped. Retention runs at start and every `prune_every_s`.
If the store cannot be opened at start (a PostgreSQL server that is down), the sink starts anyway and opens
it with the same retries: the monitor watches its cameras and the writes wait within the queue bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from typing import Any

from corevad.backoff import Backoff, BackoffPolicy

from ..messages import Message, kinds_where
from ..store import EventStore, Retention, StoreError, StoreLocation, open_store, retryable

log = logging.getLogger(__name__)

_STORED_KINDS = kinds_where("store")
_STOP = object()
DEFAULT_RETRY = BackoffPolicy(initial_s=0.5, max_s=30.0, factor=2.0, jitter=0.2)
STALL_S = 10.0  # a write with no answer for this long makes health() say failing (a frozen server)


class EventStoreSink:
    """Sink writing to an EventStore from its own thread (keyword-only; `queue_size` bounds the backlog, the
    writes waiting for a failing disk included)."""

    name = "store"

    def __init__(self, location: StoreLocation, *, retention: Retention = Retention(), queue_size: int = 10_000,
                 prune_every_s: float = 3600.0, retry: BackoffPolicy = DEFAULT_RETRY, stall_s: float = STALL_S
                 ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.location = location
        self.path = location.describe()  # for logs: the file or the URL
        self.stall_s = stall_s
        self.retention = retention
        self.prune_every_s = prune_every_s
        self.store: EventStore | None = None
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.retried = 0  # writes that failed at least once and went in later
        self.lost = 0  # writes still refused at shutdown
        self._queue_size = queue_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._waiting: collections.deque[tuple[Message, float]] = collections.deque()  # refused, in order
        self._backoff = Backoff(retry)
        self._next_try = 0.0
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._busy_since: float | None = None  # monotonic start of the store call in flight
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> EventStoreSink:
        try:
            self.store = await asyncio.to_thread(open_store, self.location, retention=self.retention)
        except StoreError as exc:
            if not self.location.is_postgres:
                raise  # a sqlite file that cannot be opened is the operator's to fix now
            self._refused(exc)  # the server is down: keep watching, open it with the writes' retries
        self._thread = threading.Thread(target=self._run, name="corevad[store].writer", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue.put(_STOP)  # blocks only while the queue is full: the writer is draining it
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30.0)
        if self.store is not None and (self._thread is None or not self._thread.is_alive()):
            self.store.close()

    async def send(self, message: Message) -> None:
        if message.kind not in _STORED_KINDS:
            return
        try:
            self._queue.put_nowait((message, time.time()))
        except queue.Full:
            self._count_drop("is behind")

    def health(self) -> dict[str, Any]:
        """ok / failing (since when, why) and the writes not stored yet: what stats, metrics and the page show."""
        failing_since, last_error = self._failing_since, self._last_error
        busy = self._busy_since
        if failing_since is None and busy is not None and time.monotonic() - busy > self.stall_s:
            stalled = time.monotonic() - busy
            failing_since = time.time() - stalled
            last_error = f"the store has not answered for {stalled:.0f} s"
        return {"state": "ok" if failing_since is None else "failing", "failing_since": failing_since,
                "last_error": last_error, "pending": len(self._waiting) + self._queue.qsize(),
                "written": self.written, "dropped": self.dropped, "errors": self.errors, "retried": self.retried}

    def _count_drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
            log.error("event store %s %s: %d message(s) not stored so far", self.path, why, self.dropped)

    def _run(self) -> None:
        next_prune = 0.0
        while True:
            if self.store is not None and time.monotonic() >= next_prune and not self._waiting:
                next_prune = time.monotonic() + self.prune_every_s
                try:
                    self._busy_since = time.monotonic()
                    self.store.prune()
                except Exception as exc:  # noqa: BLE001 - the sink boundary: log, count, keep writing
                    self.errors += 1
                    log.error("event store %s: retention failed: %s", self.path, exc)
                finally:
                    self._busy_since = None
            wait = None if not self._waiting else max(0.0, self._next_try - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._drain()  # one last try, whatever the backoff says
                if self._waiting:
                    self.lost = len(self._waiting)
                    log.error("event store %s: %d write(s) still refused at shutdown (%s) are not stored",
                              self.path, self.lost, self._last_error)
                return
            if item is not None:
                if len(self._waiting) >= self._queue_size:
                    self._waiting.popleft()  # the bound holds while the disk fails: the oldest goes
                    self._count_drop("keeps failing")
                self._waiting.append(item)
            if self._failing_since is None or time.monotonic() >= self._next_try:
                self._drain()

    def _drain(self) -> None:
        """Write what waits, oldest first, until the store refuses one (then back off)."""
        if self.store is None:
            try:  # it could not be opened at start (the database was down)
                self.store = open_store(self.location, retention=self.retention)
            except StoreError as exc:
                self._refused(exc)
                return
        if self._failing_since is not None:
            try:  # a WAL that grew until the disk was full holds space a checkpoint gives back
                self.store.checkpoint()
            except Exception as exc:  # noqa: BLE001 - best effort; the write below says what is wrong
                log.debug("event store checkpoint failed: %s", exc)
        while self._waiting:
            message, at = self._waiting[0]
            self._busy_since = time.monotonic()
            try:
                self.store.write(message.kind, message.camera, message.json_payload(), at, alert_id=message.alert_id)
            except Exception as exc:  # noqa: BLE001 - the sink boundary
                if retryable(exc):
                    self._refused(exc)
                    return
                self._waiting.popleft()
                self.errors += 1
                log.error("event store %s: cannot store a %s message: %s", self.path, message.kind, exc)
                continue
            finally:
                self._busy_since = None
            self._waiting.popleft()
            self.written += 1
            if self._failing_since is not None:
                self.retried += 1
        if self._failing_since is not None:
            log.warning("event store %s works again after %.0f s; %d write(s) stored late, none lost", self.path,
                        time.time() - self._failing_since, self.retried)
            self._failing_since = None
            self._backoff.reset()

    def _refused(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        self._next_try = time.monotonic() + self._backoff.next_delay()
        if self._failing_since is None:
            self._failing_since = time.time()
            log.error("EVENT STORE %s FAILS (%s): %d write(s) wait and are retried with backoff", self.path,
                      self._last_error, len(self._waiting))
