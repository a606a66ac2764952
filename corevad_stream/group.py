"""A group of monitors sharing one camera list: leases in PostgreSQL, fencing, failover and rebalance.

Every member starts with the full camera list and runs only the cameras it holds a lease on. The leases
live in the shared database (table `camera_leases`: camera, owner, fence, expires), timed by the
DATABASE's clock, so members' clocks never have to agree. Every takeover raises the camera's fence number.
Each member heartbeats itself (`group_monitors`) and renews its leases every `renew_s`; a claim is one
conditional INSERT .. ON CONFLICT DO UPDATE .. WHERE the lease is free or expired.

Rebalance: a fair share is ceil(cameras / live members), capped by max_cameras. A member above its share
ends a camera cleanly and then releases it; a member below claims free or expired leases, in an order of
its own (rendezvous hashing), so a join moves few cameras. Takeover bound: a dead or frozen member's leases
expire at most lease_s after its last renew, and the others look every renew_s, so a camera is claimed again
within lease_s + renew_s (+ one renew period of settling after a database outage, + the camera's start).

Fencing: the publisher asks `allows(message)` before anything for a camera goes out. A lease is trusted
locally until (start of the last renew that succeeded) + lease_s - margin, by this process's MONOTONIC
clock. A process frozen by SIGSTOP wakes up with lapsed leases, so it publishes nothing for them; a lapsed
lease is trusted again only when the database confirms it (same owner, same fence), otherwise it is lost
and the camera stops (its last words are fenced off too).

Database down: nobody can claim, so what a member holds stays its own: while the renew loop keeps running
on time, a failed renew extends local trust (a lapsed lease is never revived without the database).
Members keep watching, take nothing new, and say so (group health: db "down"). The remaining gap: a member
cut off from the database while the others still reach it keeps watching its cameras after the others
took them over (both watch) until it reaches the database again and learns it lost them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import StreamError
from .messages import AlertEventRecord, Message
from .store import StoreError

log = logging.getLogger(__name__)

__all__ = ["FAILOVER_REASON", "HANDOVER_REASON", "GroupAlertRecord", "GroupError", "GroupMember", "LeaseBook",
           "ended_by_failover", "fair_share"]

FAILOVER_REASON = "monitor failover"  # an alert a dead member left open, ended by the new owner
HANDOVER_REASON = "camera handed over"  # a camera ended cleanly so that another member can take it

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS group_monitors (
        monitor TEXT PRIMARY KEY, started TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat TIMESTAMPTZ NOT NULL, expires TIMESTAMPTZ NOT NULL, max_cameras INTEGER)""",
    """CREATE TABLE IF NOT EXISTS camera_leases (
        camera TEXT PRIMARY KEY, owner TEXT, fence BIGINT NOT NULL, expires TIMESTAMPTZ NOT NULL)""",
    # What arming commands left for a camera (corevad_stream.arming.ArmingMemory as JSON): shared, so a camera
    # that moves to another member keeps its disarm or snooze instead of that member's local file's view.
    """CREATE TABLE IF NOT EXISTS camera_arming (
        camera TEXT PRIMARY KEY, memory JSONB NOT NULL, updated TIMESTAMPTZ NOT NULL DEFAULT now())""",
)
# The open-alert record is the store's own `open_alerts` table (corevad_stream/store/_postgres.py migrates it);
# a group member writes it fenced (record_open_alert), a lone monitor through alert_state.PostgresOpenAlerts.


class GroupError(StreamError):
    """The group's database could not be reached or answered an error."""


def fair_share(cameras: int, caps: Sequence[int | None], mine: int | None) -> int:
    """This member's share: ceil(cameras / live members) capped by its max_cameras, where what capped members
    cannot take is spread over the others (caps: every live member's max_cameras, this one's included)."""
    remaining, open_caps = cameras, list(caps) or [mine]
    while open_caps:
        share = math.ceil(remaining / len(open_caps))
        capped = [c for c in open_caps if c is not None and c < share]
        if not capped:
            break
        remaining -= sum(c for c in capped if c is not None)
        open_caps = [c for c in open_caps if c is None or c >= share]
    share = math.ceil(max(0, remaining) / max(1, len(open_caps)))
    return share if mine is None else min(share, mine)


def _preference(monitor: str, camera: str) -> str:
    """Rendezvous hashing: each member prefers cameras in its own stable order."""
    return hashlib.blake2b(f"{monitor}\0{camera}".encode(), digest_size=8).hexdigest()


class LeaseBook:
    """The lease tables, one asynchronous psycopg connection, every call bounded by `timeout_s`.

    A call that fails or times out closes the connection (a frozen server leaves it unusable); the next call
    connects again. Errors come out as GroupError.
    """

    def __init__(self, url: str, *, password: str | None = None, timeout_s: float = 2.0) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.url = url
        self._password = password
        self.timeout_s = timeout_s
        self._conn: Any = None
        self._migrated = False

    def _migrate_store(self) -> None:
        """The store's schema (its open_alerts table is the record of orphaned alerts), by the store's own
        migrations, once per process (a sync connection: that is what they run on)."""
        import psycopg

        from .store._postgres import connect_kwargs, migrate

        with psycopg.connect(self.url, autocommit=True,
                             **connect_kwargs(self._password, connect_timeout_s=self.timeout_s)) as conn:
            migrate(conn, self.url)
        self._migrated = True

    async def _connection(self) -> Any:
        import psycopg

        from .store._postgres import connect_kwargs

        if not self._migrated:
            await asyncio.to_thread(self._migrate_store)
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, **connect_kwargs(self._password, connect_timeout_s=self.timeout_s))
            # Members start together: CREATE TABLE IF NOT EXISTS races with itself, so one at a time.
            async with self._conn.transaction():
                await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('corevad.group.schema'))")
                for stmt in _SCHEMA:
                    await self._conn.execute(stmt)
        return self._conn

    async def _run(self, what: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
        import psycopg

        try:
            return await asyncio.wait_for(self._call(call), self.timeout_s)
        except (TimeoutError, psycopg.Error, OSError, StoreError) as exc:
            await self.close()
            raise GroupError(f"group database: {what}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def _call(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        return await call(await self._connection())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 1.0)
            except Exception as exc:  # noqa: BLE001 - a broken connection is being dropped anyway
                log.debug("group database: closing a broken connection: %s", exc)

    async def heartbeat(self, monitor: str, lease_s: float, max_cameras: int | None = None) -> list[int | None]:
        """Mark this member alive for lease_s (database clock); the max_cameras of every live member, this one
        included."""
        async def call(conn: Any) -> list[int | None]:
            await conn.execute(
                "INSERT INTO group_monitors (monitor, heartbeat, expires, max_cameras) VALUES (%s, now(), now() + "
                "%s * interval '1 second', %s) ON CONFLICT (monitor) DO UPDATE SET heartbeat = now(), "
                "expires = EXCLUDED.expires, max_cameras = EXCLUDED.max_cameras", (monitor, lease_s, max_cameras))
            cur = await conn.execute("SELECT max_cameras FROM group_monitors WHERE expires > now()")
            return [r[0] for r in await cur.fetchall()]
        caps: list[int | None] = await self._run("heartbeat", call)
        return caps

    async def arming_memory(self, camera: str) -> dict[str, Any] | None:
        """What arming commands left for the camera in the group (None: none yet)."""
        async def call(conn: Any) -> dict[str, Any] | None:
            cur = await conn.execute("SELECT memory FROM camera_arming WHERE camera = %s", (camera,))
            row = await cur.fetchone()
            return None if row is None else dict(row[0])
        found: dict[str, Any] | None = await self._run(f"arming of {camera}", call)
        return found

    async def save_arming_memory(self, camera: str, memory: dict[str, Any]) -> None:
        """Record a camera's arming commands for the whole group (the member that holds it writes)."""
        from psycopg.types.json import Jsonb

        async def call(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO camera_arming (camera, memory) VALUES (%s, %s) ON CONFLICT (camera) DO UPDATE "
                "SET memory = EXCLUDED.memory, updated = now()", (camera, Jsonb(memory)))
        await self._run(f"save arming of {camera}", call)

    async def claim(self, camera: str, monitor: str, lease_s: float) -> int | None:
        """Take the camera's lease if it is free or expired: its new fence number, or None (someone holds it)."""
        async def call(conn: Any) -> int | None:
            cur = await conn.execute(
                "INSERT INTO camera_leases AS l (camera, owner, fence, expires) "
                "VALUES (%s, %s, 1, now() + %s * interval '1 second') "
                "ON CONFLICT (camera) DO UPDATE SET owner = EXCLUDED.owner, fence = l.fence + 1, "
                "expires = EXCLUDED.expires WHERE l.owner IS NULL OR l.expires <= now() RETURNING l.fence",
                (camera, monitor, lease_s))
            row = await cur.fetchone()
            return None if row is None else int(row[0])
        result: int | None = await self._run(f"claim {camera}", call)
        return result

    async def renew(self, monitor: str, held: dict[str, int], lease_s: float) -> set[str]:
        """Extend the leases still ours (same owner, same fence); the cameras whose lease was renewed."""
        if not held:
            return set()
        cams, fences = list(held), [held[c] for c in held]

        async def call(conn: Any) -> set[str]:
            cur = await conn.execute(
                "UPDATE camera_leases AS l SET expires = now() + %s * interval '1 second' "
                "FROM unnest(%s::text[], %s::bigint[]) AS h(camera, fence) "
                "WHERE l.camera = h.camera AND l.fence = h.fence AND l.owner = %s RETURNING l.camera",
                (lease_s, cams, fences, monitor))
            return {r[0] for r in await cur.fetchall()}
        kept: set[str] = await self._run("renew", call)
        return kept

    async def release(self, camera: str, monitor: str, fence: int) -> bool:
        """Give a lease back (only if still ours): another member may claim it at once."""
        async def call(conn: Any) -> bool:
            cur = await conn.execute(
                "UPDATE camera_leases SET owner = NULL, expires = now() WHERE camera = %s AND owner = %s "
                "AND fence = %s", (camera, monitor, fence))
            return bool(cur.rowcount)
        return bool(await self._run(f"release {camera}", call))

    async def leave(self, monitor: str) -> None:
        """This member stops: its heartbeat goes (the others' share grows at once)."""
        async def call(conn: Any) -> None:
            await conn.execute("DELETE FROM group_monitors WHERE monitor = %s", (monitor,))
        await self._run("leave", call)

    async def record_open_alert(self, camera: str, monitor: str, fence: int, alert: str | None) -> bool:
        """Keep (or clear, alert None) the camera's open alert in the shared database, fenced: only the lease
        holder with this fence can write it. False when nothing was written (the fence was raised, or there was
        nothing to clear)."""
        async def call(conn: Any) -> bool:
            args = {"c": camera, "m": monitor, "f": fence, "a": alert}
            if alert is None:
                cur = await conn.execute(
                    "DELETE FROM open_alerts WHERE camera = %(c)s AND EXISTS (SELECT 1 FROM camera_leases "
                    "WHERE camera = %(c)s AND owner = %(m)s AND fence = %(f)s)", args)
            else:
                cur = await conn.execute(
                    "INSERT INTO open_alerts (camera, alert) SELECT %(c)s, %(a)s WHERE EXISTS (SELECT 1 FROM "
                    "camera_leases WHERE camera = %(c)s AND owner = %(m)s AND fence = %(f)s) "
                    "ON CONFLICT (camera) DO UPDATE SET alert = EXCLUDED.alert", args)
            return bool(cur.rowcount)
        return bool(await self._run(f"open alert of {camera}", call))

    async def take_orphan(self, camera: str, monitor: str, fence: int) -> str | None:
        """The open alert a previous owner left, removed in the same statement that reads it, and only by the
        holder of this fence: of two claimers, exactly one gets it."""
        async def call(conn: Any) -> str | None:
            cur = await conn.execute(
                "DELETE FROM open_alerts WHERE camera = %(c)s AND EXISTS (SELECT 1 FROM camera_leases WHERE "
                "camera = %(c)s AND owner = %(m)s AND fence = %(f)s) RETURNING alert",
                {"c": camera, "m": monitor, "f": fence})
            row = await cur.fetchone()
            return None if row is None else str(row[0])
        result: str | None = await self._run(f"orphaned alert of {camera}", call)
        return result

    async def owners(self) -> dict[str, tuple[str | None, int, bool]]:
        """camera -> (owner, fence, expired): for tests, tools and the group's health."""
        async def call(conn: Any) -> dict[str, tuple[str | None, int, bool]]:
            cur = await conn.execute("SELECT camera, owner, fence, expires <= now() FROM camera_leases")
            return {r[0]: (r[1], int(r[2]), bool(r[3])) for r in await cur.fetchall()}
        result: dict[str, tuple[str | None, int, bool]] = await self._run("owners", call)
        return result


@dataclass(slots=True)
class Lease:
    fence: int
    trusted_until: float  # local monotonic time
    releasing: bool = False


StartCamera = Callable[[str, "str | None"], Awaitable[None]]  # (camera, orphaned alert JSON or None)
StopCamera = Callable[[str, str], Awaitable[None]]  # (camera, reason)


class GroupMember:
    """One member's side of the group: heartbeat, renew, fence, rebalance. `run()` is its loop.

    start(camera, orphan) is awaited after a claim (the orphan: the alert a previous owner left open, to be
    ended now); stop(camera, reason) ends a camera: HANDOVER_REASON before a release (it may publish), the
    lost-lease reason after the fence was raised (the gate is already closed: nothing it says goes out).
    """

    def __init__(self, *, book: LeaseBook, monitor: str, cameras: Sequence[str], lease_s: float, renew_s: float,
                 margin_s: float, max_cameras: int | None, start: StartCamera, stop: StopCamera,
                 publish: Callable[[Message], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < renew_s < lease_s or not 0 <= margin_s < lease_s:
            raise ValueError("need 0 < renew_s < lease_s and 0 <= margin_s < lease_s")
        if len(set(cameras)) != len(cameras):
            raise ValueError("camera names must be unique")
        self.book = book
        self.monitor = monitor
        self.cameras = sorted(cameras, key=lambda c: _preference(monitor, c))
        self.lease_s, self.renew_s, self.margin_s = lease_s, renew_s, margin_s
        self.max_cameras = max_cameras
        self._start, self._stop, self._publish = start, stop, publish
        self._clock = clock
        self.held: dict[str, Lease] = {}
        self.live_caps: list[int | None] = [max_cameras]  # every live member's max_cameras
        self.db_ok: bool | None = None  # None until the first answer
        self.db_since = time.time()
        self.db_error = ""
        self._healthy_from: float | None = None  # monotonic: the database answered without a break since then
        self.claiming = True
        self.fenced = 0  # messages the gate kept back
        self._tasks: set[asyncio.Task[None]] = set()  # stops and hand-overs in flight
        self._stopping: set[str] = set()  # cameras lost and still stopping
        self.ticks = 0
        self._announced: tuple[Any, ...] = ()

    # -- the gate (the publisher asks before every message) --------------------------------------------
    def trusted(self, camera: str) -> bool:
        lease = self.held.get(camera)
        return lease is not None and self._clock() < lease.trusted_until

    def allows(self, msg: Message) -> bool:
        """Whether a message may go out: anything not about a camera, or a camera whose lease we trust."""
        camera = msg.owner
        if camera is None or self.trusted(camera):
            return True
        self.fenced += 1
        return False

    # -- the loop --------------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            started = self._clock()
            await self.tick()
            await asyncio.sleep(max(0.0, self.renew_s - (self._clock() - started)))

    async def tick(self) -> None:
        """One heartbeat + renew (+ rebalance when the database has been answering for a full period)."""
        self.ticks += 1
        started = self._clock()
        try:
            caps = await self.book.heartbeat(self.monitor, self.lease_s, self.max_cameras)
            kept = await self.book.renew(self.monitor, {c: lease.fence for c, lease in self.held.items()},
                                         self.lease_s)
        except GroupError as exc:
            self._db_state(False, str(exc))
            self._healthy_from = None
            for lease in self.held.values():  # still on time: nobody can claim while the database is down
                if started < lease.trusted_until:
                    lease.trusted_until = started + self.lease_s - self.margin_s
            return
        self.live_caps = caps
        self._db_state(True, "")
        if self._healthy_from is None:
            self._healthy_from = started
        for camera in list(self.held):
            if camera in kept:
                self.held[camera].trusted_until = started + self.lease_s - self.margin_s
            else:
                self._lost(camera)
        # After a start or an outage, give every member one renew period to renew before anyone claims.
        if self.claiming and started - self._healthy_from >= self.renew_s * 0.999:
            await self._rebalance(started)
        self._announce()

    def _announce(self) -> None:
        """Publish the group health when what it says changed (database, members, cameras)."""
        h = self.health()
        key = (h["db"], h["live_members"], tuple(h["cameras"]), h["claiming"])
        if key != self._announced and self._publish is not None:
            self._announced = key
            self._publish(Message("group", h))

    @property
    def live_members(self) -> int:
        return len(self.live_caps)

    @property
    def share(self) -> int:
        return fair_share(len(self.cameras), self.live_caps, self.max_cameras)

    def _lost(self, camera: str) -> None:
        lease = self.held.pop(camera)
        log.warning("group: lease of camera %s lost (fence %d was raised): stopping it", camera, lease.fence)
        self._spawn(self._stop_lost(camera), f"corevad[{camera}].group-stop")

    async def _stop_lost(self, camera: str) -> None:
        self._stopping.add(camera)  # not claimed again until it has stopped: it would not start twice
        try:
            await self._stop(camera, "lease lost")
        finally:
            self._stopping.discard(camera)

    async def _rebalance(self, started: float) -> None:
        share = self.share
        active = [c for c in self.cameras if c in self.held and not self.held[c].releasing]
        for camera in reversed(active[share:]):  # the least preferred go
            self.held[camera].releasing = True
            self._spawn(self._hand_over(camera), f"corevad[{camera}].group-release")
        want = share - len(active)
        for camera in self.cameras:
            if want <= 0:
                break
            if camera in self.held or camera in self._stopping:
                continue
            try:
                fence = await self.book.claim(camera, self.monitor, self.lease_s)
                if fence is None:
                    continue
                self.held[camera] = Lease(fence, started + self.lease_s - self.margin_s)
                orphan = await self.book.take_orphan(camera, self.monitor, fence)
            except GroupError as exc:
                self._db_state(False, str(exc))
                return
            log.info("group: %s took camera %s (fence %d)", self.monitor, camera, fence)
            want -= 1
            try:
                await self._start(camera, orphan)
            except Exception:  # noqa: BLE001 - one camera that cannot start must not end the member's loop
                log.exception("group: camera %s could not start; giving its lease back", camera)
                lease = self.held.pop(camera)
                try:
                    await self.book.release(camera, self.monitor, lease.fence)
                except GroupError as exc:
                    log.warning("group: could not release camera %s: %s", camera, exc)

    async def _hand_over(self, camera: str) -> None:
        try:
            await self._stop(camera, HANDOVER_REASON)
        finally:
            lease = self.held.pop(camera, None)
            if lease is not None:
                try:
                    await self.book.release(camera, self.monitor, lease.fence)
                except GroupError as exc:  # it expires by itself within lease_s
                    log.warning("group: could not release camera %s: %s", camera, exc)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        """Stops and hand-overs run beside the loop: a camera's clean end may take shutdown_timeout_s, and the
        renewals must not wait for it."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("group: %s failed: %s: %s", task.get_name(), type(exc).__name__, exc)

    def _db_state(self, ok: bool, error: str) -> None:
        if ok != self.db_ok:
            self.db_ok, self.db_since, self.db_error = ok, time.time(), error
            if not ok:
                log.warning("group: the database is unreachable (%s): keeping %d camera(s), taking none",
                            error, len(self.held))
            elif self.held or self.ticks > 1:
                log.info("group: the database answers again")
            self._announce()

    def health(self) -> dict[str, Any]:
        """The group's state as this member sees it (<prefix>/group, /api/model, the stats)."""
        return {"monitor": self.monitor, "db": "ok" if self.db_ok else ("down" if self.db_ok is False else "unknown"),
                "since": round(self.db_since, 3), "error": self.db_error, "live_members": self.live_members,
                "cameras": sorted(self.held), "claiming": bool(self.db_ok) and self.claiming,
                "share": self.share,
                "fenced_messages": self.fenced}

    # -- teardown --------------------------------------------------------------------------------------
    def stop_claiming(self) -> None:
        self.claiming = False

    async def settle(self) -> None:
        """Wait for hand-overs and stops in flight."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def leave(self) -> None:
        """Release every lease still held and remove the heartbeat: the others take over at once."""
        await self.settle()
        try:
            for camera, lease in list(self.held.items()):
                await self.book.release(camera, self.monitor, lease.fence)
            await self.book.leave(self.monitor)
        except GroupError as exc:
            log.warning("group: could not leave cleanly (%s): the leases expire within %.0f s", exc, self.lease_s)
        self.held.clear()
        await self.book.close()


class GroupAlertRecord:
    """The open-alert record of a group member: one row per camera in the shared database, written only by
    the holder of the camera's current fence (dispatch awaits it before the alert event is published)."""

    def __init__(self, member: GroupMember) -> None:
        self.member = member

    async def set(self, camera: str, alert: dict[str, Any] | None) -> None:
        m = self.member
        lease = m.held.get(camera)
        if lease is None:
            return
        try:
            ok = await m.book.record_open_alert(camera, m.monitor, lease.fence,
                                                None if alert is None else json.dumps(alert))
        except GroupError as exc:  # logged; the alert still goes out (as with a sqlite record that fails)
            log.error("group: cannot record the open alert of camera %s: %s", camera, exc)
            return
        if not ok and alert is not None:
            log.warning("group: camera %s: the open alert was not recorded (the lease was taken over)", camera)


def ended_by_failover(alert_json: str, now: float | None = None) -> Message | None:
    """The `end` event of an alert a dead or frozen member left open: reason "monitor failover"."""
    try:
        alert = json.loads(alert_json)
        if not isinstance(alert, dict) or "id" not in alert:
            raise ValueError("not an alert")
    except ValueError as exc:
        log.error("group: an unreadable orphaned alert (%s); not ended", exc)
        return None
    now = time.time() if now is None else now
    after = {**alert, "active": False, "end_time": alert.get("end_time") or now, "end_reason": FAILOVER_REASON}
    log.warning("camera %s: ending alert %s left open by another monitor (%s)", alert.get("camera"),
                alert.get("id"), FAILOVER_REASON)
    return Message("events", AlertEventRecord(type="end", before=alert, after=after))
