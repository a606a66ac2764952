"""The lease logic of a group of monitors against a real PostgreSQL: claim, renew, expiry, fencing, orphaned
alerts, rebalance, max_cameras, a frozen member and a database outage."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from corevad_stream.group import (
    FAILOVER_REASON,
    HANDOVER_REASON,
    GroupAlertRecord,
    GroupMember,
    LeaseBook,
    ended_by_failover,
    fair_share,
)
from corevad_stream.messages import Message

LEASE_S = 1.0  # short: the tests wait for the database's clock to pass lease expiries
RENEW_S = 0.25


def _password() -> str:
    return os.environ["COREVAD_TEST_PG_PASSWORD"]


async def _until_expired(book: LeaseBook, camera: str, timeout: float = 20) -> None:
    """Wait on the database's clock (never a local sleep as a guess) until the camera's lease expired."""
    for _ in range(int(timeout / 0.1)):
        owners = await book.owners()
        if owners.get(camera, (None, 0, True))[2]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the lease of {camera} did not expire within {timeout} s")


@pytest.fixture
async def books(postgres_url: str) -> AsyncIterator[Callable[[], LeaseBook]]:
    made: list[LeaseBook] = []

    def make() -> LeaseBook:
        made.append(LeaseBook(postgres_url, password=_password(), timeout_s=5.0))
        return made[-1]

    yield make
    for b in made:
        await b.close()


class FakeClock:
    """The member's local monotonic clock, moved by the test (a freeze is a jump)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cameras:
    """What a member started and stopped, in order (the app's add_camera/remove_camera in the real thing)."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.log: list[tuple[str, str, str | None]] = []

    async def start(self, camera: str, orphan: str | None) -> None:
        self.running.add(camera)
        self.log.append(("start", camera, orphan))

    async def stop(self, camera: str, reason: str) -> None:
        self.running.discard(camera)
        self.log.append(("stop", camera, reason))


def _member(book: LeaseBook, name: str, cameras: list[str], clock: FakeClock, *, max_cameras: int | None = None,
            published: list[Message] | None = None) -> tuple[GroupMember, Cameras]:
    cams = Cameras()
    m = GroupMember(book=book, monitor=name, cameras=cameras, lease_s=LEASE_S, renew_s=RENEW_S, margin_s=RENEW_S,
                    max_cameras=max_cameras, start=cams.start, stop=cams.stop,
                    publish=published.append if published is not None else None, clock=clock)
    return m, cams


async def _ticks(member: GroupMember, clock: FakeClock, n: int = 2) -> None:
    """n renew periods of the member (its local clock moves one period each)."""
    for _ in range(n):
        await member.tick()
        await member.settle()
        clock.now += RENEW_S


def test_the_fair_share_is_the_ceiling_capped_by_max_cameras_and_the_capped_rest_goes_to_the_others() -> None:
    assert fair_share(9, [None] * 3, None) == 3 and fair_share(9, [None] * 2, None) == 5
    assert fair_share(9, [4], 4) == 4 and fair_share(1, [None] * 5, None) == 1 and fair_share(0, [None], None) == 0
    assert fair_share(9, [None, None, 2], 2) == 2 and fair_share(9, [None, None, 2], None) == 4  # 7 over two
    assert fair_share(9, [1, 1, 1], 1) == 1  # not enough room: six cameras stay unwatched (and are reported)
    assert fair_share(3, [], None) == 3


async def test_a_claim_is_exclusive_renewal_keeps_it_and_a_takeover_after_expiry_raises_the_fence(
        books: Callable[[], LeaseBook]) -> None:
    a, b = books(), books()
    assert await a.claim("gate", "A", LEASE_S) == 1
    assert await b.claim("gate", "B", LEASE_S) is None  # held and not expired
    assert await a.renew("A", {"gate": 1}, LEASE_S) == {"gate"}
    assert await b.renew("B", {"gate": 1}, LEASE_S) == set()  # not B's
    await _until_expired(b, "gate")
    assert await b.claim("gate", "B", LEASE_S) == 2  # a takeover: the fence goes up
    assert await a.renew("A", {"gate": 1}, LEASE_S) == set()  # A learns it lost the camera
    assert not await a.release("gate", "A", 1)  # A cannot give back what is no longer its own
    assert (await a.owners())["gate"][:2] == ("B", 2)
    assert await b.release("gate", "B", 2)
    assert await a.claim("gate", "A", LEASE_S) == 3  # a released lease is free at once


async def test_two_members_claiming_the_same_free_camera_at_once_get_one_lease(
        books: Callable[[], LeaseBook]) -> None:
    claimers = [books() for _ in range(4)]
    fences = await asyncio.gather(*(bk.claim("yard", f"M{i}", LEASE_S) for i, bk in enumerate(claimers)))
    assert sorted(f for f in fences if f is not None) == [1] and fences.count(None) == 3


async def test_an_orphaned_alert_goes_to_the_new_fence_holder_exactly_once(books: Callable[[], LeaseBook]) -> None:
    a, b, c = books(), books(), books()
    alert = {"id": "r1-gate-1", "camera": "gate", "active": True, "start_time": 1.0, "end_time": None}
    assert await a.claim("gate", "A", LEASE_S) == 1
    assert await a.record_open_alert("gate", "A", 1, json.dumps(alert))
    await _until_expired(a, "gate")
    assert await b.claim("gate", "B", LEASE_S) == 2
    # The old owner, woken up, can neither overwrite the record nor take the orphan; C never held the fence.
    assert not await a.record_open_alert("gate", "A", 1, json.dumps({**alert, "score": 0.9}))
    assert await a.take_orphan("gate", "A", 1) is None and await c.take_orphan("gate", "C", 2) is None
    both = await asyncio.gather(b.take_orphan("gate", "B", 2), b.take_orphan("gate", "B", 2))
    assert [x for x in both if x is not None] == [json.dumps(alert)]
    end = ended_by_failover(json.dumps(alert), now=5.0)
    assert end is not None
    after = end.serialised().payload["after"]  # type: ignore[index]
    assert after["end_reason"] == FAILOVER_REASON and after["active"] is False and after["end_time"] == 5.0
    assert ended_by_failover("not json") is None


async def test_members_share_nine_cameras_rebalance_on_join_and_respect_max_cameras(
        books: Callable[[], LeaseBook]) -> None:
    cams = [f"c{i}" for i in range(9)]
    clock = FakeClock()
    a, a_cams = _member(books(), "A", cams, clock)
    await _ticks(a, clock)
    assert a_cams.running == set(cams) and set(a.held) == set(cams)  # alone: every camera
    b, b_cams = _member(books(), "B", cams, clock)
    await _ticks(b, clock)  # B is live, but everything is held: B gets nothing yet
    assert not b_cams.running and b.live_members == 2
    await _ticks(a, clock, 1)  # A sees two members: share 5, hands 4 over (stopped cleanly, then released)
    assert len(a_cams.running) == 5 == len(a.held)
    assert [e[2] for e in a_cams.log if e[0] == "stop"] == [HANDOVER_REASON] * 4
    await _ticks(b, clock, 1)
    assert len(b_cams.running) == 4 and b_cams.running.isdisjoint(a_cams.running)
    c, c_cams = _member(books(), "C", cams, clock, max_cameras=2)
    await _ticks(c, clock)
    for m in (a, b, c, a, b, c):
        await _ticks(m, clock, 1)
    owners = await a.book.owners()
    assert {cam for cam, (owner, _, expired) in owners.items() if owner and not expired} == set(cams)
    per = {m: sorted(cam for cam, (o, _, _) in owners.items() if o == m) for m in "ABC"}
    assert 1 <= len(per["C"]) <= 2 and a.share == b.share == 4  # C's cap; the two it cannot take, A and B can
    assert len(per["A"]) <= 4 and len(per["B"]) <= 4
    assert set(a.held) | set(b.held) | set(c.held) == set(cams)
    assert a_cams.running == set(a.held) and b_cams.running == set(b.held) and c_cams.running == set(c.held)
    await c.leave()  # a clean leave releases at once: the others take C's cameras on their next periods
    for m in (a, b, a, b):
        await _ticks(m, clock, 1)
    assert sorted([len(a.held), len(b.held)]) == [4, 5] and set(a.held) | set(b.held) == set(cams)


async def test_a_frozen_member_publishes_nothing_when_it_wakes_and_stops_the_cameras_it_lost(
        books: Callable[[], LeaseBook]) -> None:
    clock = FakeClock()
    a, a_cams = _member(books(), "A", ["gate", "yard"], clock)
    await _ticks(a, clock)
    score = Message("score", {"index": 1}, camera="gate")
    assert a.allows(score) and a.allows(Message("stats", {}))
    clock.now += LEASE_S  # SIGSTOP for longer than the lease: by its own clock A no longer trusts it
    assert not a.allows(score) and a.allows(Message("stats", {})) and a.fenced == 1
    # Meanwhile B took "gate" (A's leases expired on the database's clock); "yard" stayed free.
    b, _ = _member(books(), "B", ["gate"], FakeClock())
    await _until_expired(b.book, "gate")
    assert await b.book.claim("gate", "B", LEASE_S) is not None
    await a.tick()  # SIGCONT: the renew tells A which leases it kept
    await a.settle()
    assert ("stop", "gate", "lease lost") in a_cams.log and "gate" not in a.held
    assert not a.allows(score)  # still fenced: what its stopping camera says goes nowhere
    assert a.allows(Message("score", {}, camera="yard"))  # confirmed by the database: trusted again


async def test_a_lapsed_lease_is_revived_only_by_the_database(books: Callable[[], LeaseBook]) -> None:
    clock = FakeClock()
    a, _ = _member(books(), "A", ["gate"], clock)
    await _ticks(a, clock)
    clock.now += LEASE_S
    msg = Message("score", {}, camera="gate")
    assert not a.allows(msg)
    await a.tick()  # nobody took it: same owner, same fence
    assert a.allows(msg)


async def test_the_open_alert_record_of_a_member_is_fenced(books: Callable[[], LeaseBook]) -> None:
    clock = FakeClock()
    a, _ = _member(books(), "A", ["gate"], clock)
    await _ticks(a, clock)
    record = GroupAlertRecord(a)
    alert = {"id": "x", "camera": "gate", "active": True}
    await record.set("gate", alert)
    fence = a.held["gate"].fence
    await _until_expired(a.book, "gate")
    b = books()
    new = await b.claim("gate", "B", LEASE_S)
    assert new == fence + 1
    await record.set("gate", None)  # A's late "alert ended" cannot clear what B must end
    assert await b.take_orphan("gate", "B", new) == json.dumps(alert)


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[object]:
    """A server of this test's own: it is stopped and frozen."""
    from corevad_stream.testing.postgres import PostgresServer

    server = PostgresServer(tmp_path)
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.remove)


async def test_while_the_database_is_down_members_keep_their_cameras_take_none_and_say_so(
        own_postgres: object) -> None:
    from corevad_stream.testing.postgres import PostgresServer

    assert isinstance(own_postgres, PostgresServer)
    server = own_postgres
    clock = FakeClock()
    published: list[Message] = []
    book = LeaseBook(server.url, password=server.password, timeout_s=1.0)
    a, a_cams = _member(book, "A", ["gate", "yard"], clock, max_cameras=1, published=published)
    await _ticks(a, clock)
    assert len(a.held) == 1 and a.health()["db"] == "ok"
    held = next(iter(a.held))
    await asyncio.to_thread(server.stop)
    for _ in range(int(3 * LEASE_S / RENEW_S)):  # three lease lengths on time, the database down throughout
        await _ticks(a, clock, 1)
        assert a.allows(Message("score", {}, camera=held)), "a member keeps publishing what it holds"
    health = a.health()
    assert health["db"] == "down" and health["claiming"] is False and health["cameras"] == [held]
    assert [m.payload["db"] for m in published if m.kind == "group"][-1] == "down"  # type: ignore[index]
    await asyncio.to_thread(server.start)
    server.freeze()  # a hung server: every call is bounded by the book's timeout
    try:
        started = asyncio.get_running_loop().time()
        await a.tick()
        assert asyncio.get_running_loop().time() - started < 5 and a.db_ok is False
    finally:
        server.thaw()
    for _ in range(40):  # bounded: the first tick after thawing may still meet the broken connection
        await _ticks(a, clock, 1)
        if a.db_ok:
            break
    assert a.db_ok and set(a.held) == {held} and a_cams.running == {held}
    assert [m.payload["db"] for m in published if m.kind == "group"][-1] == "ok"  # type: ignore[index]


@pytest.mark.parametrize(("group", "store", "message"), [
    ({"enabled": True}, {}, "group.enabled needs store.url: postgresql://"),
    ({"enabled": True, "lease_s": 3, "renew_s": 2}, {"url": "postgresql://u@h/db"}, "at most a third of group.lease_s"),
    ({"enabled": True, "monitor_id": "a b"}, {"url": "postgresql://u@h/db"}, "group.monitor_id"),
    ({"enabled": True, "leese_s": 3}, {"url": "postgresql://u@h/db"}, "group.leese_s"),
    ({"max_cameras": 0}, {}, "group.max_cameras"),
])
def test_a_bad_group_section_is_one_line_naming_the_field_and_exit_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], group: dict[str, object], store: dict[str, object],
        message: str) -> None:
    from corevad_stream.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"cameras": [{"name": "a", "url": "frameless://30"}], "metrics": {"enabled": False},
                               "group": group, "store": store}))
    assert main(["check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("config error:") and message in err, err


def test_the_group_defaults_live_in_the_schema_and_the_monitor_id_is_stable_per_state_folder(tmp_path: Path) -> None:
    from corevad_stream.config import GroupConfig

    g = GroupConfig()
    assert (g.enabled, g.lease_s, g.renew_s, g.max_cameras) == (False, 10.0, 2.0, None)
    assert g.monitor(tmp_path / "a") == g.monitor(tmp_path / "a") != g.monitor(tmp_path / "b")
    assert GroupConfig(monitor_id="door-1").monitor(tmp_path) == "door-1"


async def test_a_lone_monitor_names_itself_in_status_messages_and_the_camera_overview(tmp_path: Path) -> None:
    from stream_doubles import ScriptedBackend, stream_config

    from corevad_stream import App, MemorySink

    cfg = stream_config([{"name": "a", "url": "frameless://30", "rate": "native"}],
                        group={"monitor_id": "lone-1"}, runtime={"state_dir": str(tmp_path)})
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(), sinks=[sink]) as app:
        await app.wait_finished(timeout=30)
        assert [c["monitor"] for c in app.camera_overview()] == ["lone-1"]
    statuses = [m.payload for m in sink.of("status", "a")]
    assert statuses and all(s["monitor"] == "lone-1" for s in statuses)  # type: ignore[index]


def test_the_kubernetes_example_holds_a_valid_group_config() -> None:
    """Not run on a cluster (docs/k8s/README.md), but its monitor config must at least be one corevad accepts."""
    import yaml

    from corevad_stream.config import config_from_dict

    docs = list(yaml.safe_load_all((Path(__file__).parents[2] / "docs" / "k8s" / "corevad-group.yaml").read_text()))
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert {"Deployment/monitor", "StatefulSet/postgres", "Deployment/mosquitto", "StatefulSet/vllm"} <= set(kinds)
    vllm = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "vllm")
    assert vllm["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    cfg = config_from_dict(yaml.safe_load(cm["data"]["group.yaml"]))
    assert cfg.group.enabled and cfg.store.url and len(cfg.model.vlm.openai.urls) == vllm["spec"]["replicas"]


async def test_a_camera_that_cannot_start_gives_its_lease_back_and_the_member_carries_on(
        books: Callable[[], LeaseBook]) -> None:
    clock = FakeClock()
    a, cams = _member(books(), "A", ["bad", "good"], clock)

    async def start(camera: str, orphan: str | None) -> None:
        if camera == "bad":
            raise RuntimeError("cannot open the stream")
        cams.running.add(camera)

    a._start = start
    await _ticks(a, clock)
    assert set(a.held) == {"good"} == cams.running
    assert (await a.book.owners())["bad"][0] is None  # released: another member may try it


async def test_a_lost_camera_still_stopping_is_not_claimed_again_until_it_stopped(
        books: Callable[[], LeaseBook]) -> None:
    clock = FakeClock()
    a, cams = _member(books(), "A", ["gate"], clock)
    await _ticks(a, clock)
    release = asyncio.Event()

    async def slow_stop(camera: str, reason: str) -> None:
        cams.log.append(("stopping", camera, reason))
        await release.wait()  # a camera's clean end takes a while (it scores what it cut)
        cams.running.discard(camera)
        cams.log.append(("stop", camera, reason))

    a._stop = slow_stop
    b = books()
    await _until_expired(b, "gate")
    fence = await b.claim("gate", "B", LEASE_S)
    assert fence is not None
    await a.tick()  # A learns it lost gate: the stop starts and hangs
    assert await b.release("gate", "B", fence)  # gate is free again
    clock.now += RENEW_S
    await a.tick()
    assert "gate" not in a.held and [e[0] for e in cams.log].count("start") == 1  # not while it still stops
    release.set()
    await a.settle()
    clock.now += RENEW_S
    await a.tick()
    assert "gate" in a.held and [e[0] for e in cams.log] == ["start", "stopping", "stop", "start"]


async def test_a_camera_keeps_its_disarm_when_another_member_takes_it_over(  # type: ignore[no-untyped-def]
    books, tmp_path: Path,
) -> None:
    """Arming commands live in the group's database too: the member that takes a camera over reads them, so a
    camera someone disarmed does not start alerting again on another member (its own state file knows nothing)."""
    from stream_doubles import camera_pipeline

    from corevad_stream.arming_control import ArmingControl
    from corevad_stream.camera import CameraPipeline
    from corevad_stream.entities import ScoringOutput

    def pipeline() -> CameraPipeline:
        return camera_pipeline("dock")

    async def dispatch(cam: CameraPipeline, out: ScoringOutput) -> None:
        return None

    def control(name: str, shared: LeaseBook | None) -> ArmingControl:
        c = ArmingControl(tmp_path / f"arming-{name}.json", prefix="g", publish=lambda m: None, dispatch=dispatch,
                          drop_waiting=lambda camera, reason: 0, on_change=lambda cam: None)
        c.shared = shared
        return c

    first, second = control("a", books()), control("b", books())
    await first.attach(pipeline())
    assert (await first.set_armed("dock", False)).state == "disarmed"
    first.detach("dock")  # handed over (or its member died)
    taken = pipeline()
    decision = await second.attach(taken)
    assert decision.state == "disarmed" and decision.source == "manual" and not taken.armed
    # Without the shared record the new owner would go by its own (empty) state file: armed.
    assert (await control("c", None).attach(pipeline())).state == "armed"
