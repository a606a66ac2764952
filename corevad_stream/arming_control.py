"""Arming at run time: commands (MQTT, Home Assistant, HTTP) and schedule edges applied to the cameras.

corevad_stream.arming decides; this module remembers what commands left behind (one small JSON file in
the state directory, written atomically, so the arming state survives a restart), re-decides at each
command and at each schedule edge or snooze end (one task, corevad[arming].clock), and applies a changed
decision: the camera's pipeline stops or resumes submitting segments (CameraPipeline.set_arming), an open
alert ends ("disarmed"), and the retained `<prefix>/<camera>/arming` and status say so.

Why an unreadable state file is a warning and not a refusal to start: it only holds commands, and the
fail-safe reading of "no commands" is the config (armed by default): a monitor that refuses to watch
because a file of its own is torn would be the worse failure.

Commands on MQTT: `<prefix>/<camera>/arming/set` ON|OFF and `<prefix>/<camera>/snooze/set` minutes (0
cancels). A bad payload, an unknown camera or a retained command is refused with one log line and changes
nothing (a retained command would be replayed by the broker at every reconnect and undo later commands).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from corevad.errors import CorevadError
from corevad.files import KIB, atomic_write_json, read_text_checked

from .arming import Arming, ArmingMemory, Schedule, decide, parse_minutes, parse_switch
from .entities import DISARMED_REASON, ScoringOutput
from .errors import StreamError
from .messages import Message, topic

if TYPE_CHECKING:
    from .camera import CameraPipeline

log = logging.getLogger(__name__)

__all__ = ["ArmingControl", "CommandError", "SharedArming", "arming_state_path", "command_topics"]

MAX_STATE_BYTES = 256 * KIB  # 64 cameras need ~8 KiB
RECHECK_S = 30.0  # the clock task looks again at least this often (the wall clock may be stepped)
COMMANDS = ("arming/set", "snooze/set")
MAX_PAYLOAD_BYTES = 64  # "OFF", "30": anything longer is not a command


class CommandError(ValueError):
    """A command refused: `status` is the HTTP status (400 bad body, 404 unknown camera)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def arming_state_path(state_dir: Path, prefix: str) -> Path:
    return state_dir / f"arming-{prefix.replace('/', '-')}.json"


def command_topics(prefix: str) -> list[str]:
    """The MQTT subscriptions of the commands (one wildcard per command, every camera)."""
    return [topic(prefix, c, "+") for c in COMMANDS]


class SharedArming(Protocol):
    """A group's shared record of arming commands (group.LeaseBook); its errors are StreamErrors."""

    async def arming_memory(self, camera: str) -> dict[str, Any] | None: ...

    async def save_arming_memory(self, camera: str, memory: dict[str, Any]) -> None: ...


class ArmingControl:
    """The cameras' arming, applied on the event loop. `attach` a camera when it starts, `detach` it when
    it is removed; `run()` is the clock task."""

    def __init__(self, path: Path, *, prefix: str, publish: Callable[[Message], None],
                 dispatch: Callable[[CameraPipeline, ScoringOutput], Awaitable[None]],
                 drop_waiting: Callable[[str, str], int], on_change: Callable[[CameraPipeline], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.prefix = prefix
        self._publish = publish
        self._dispatch = dispatch
        self._drop_waiting = drop_waiting
        self._on_change = on_change
        self.clock = clock  # the wall clock schedules and snoozes are read on (a test may replace it)
        self._memory: dict[str, ArmingMemory] = {}
        self._cameras: dict[str, tuple[CameraPipeline, Schedule | None, bool]] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False
        self.refused = 0  # commands refused (bad payload, unknown camera, retained)
        # A group's shared record of the commands (group.LeaseBook): a camera that moves to another member keeps
        # its arming. None: this monitor's state file alone.
        self.shared: SharedArming | None = None

    # -- the state file --------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the commands a previous run left (none when the file is missing or unreadable: warned)."""
        if not self.path.exists():
            return
        try:
            data = json.loads(read_text_checked(self.path, limit=MAX_STATE_BYTES, what="arming state file"))
            if not isinstance(data, dict):
                raise ValueError("the top level is not a mapping")
            self._memory = {str(k): ArmingMemory.from_json(v) for k, v in data.items()}
        except (CorevadError, OSError, ValueError) as exc:
            log.warning("arming state file %s unreadable (%s): starting from the config's arming", self.path, exc)
            self._memory = {}

    async def _save(self, name: str) -> None:
        """Persist before the change is applied (a restart right after a command keeps it); the write and its
        fsync (1-45 ms measured here on a busy disk) run off the event loop, which keeps scoring meanwhile.
        In a group the camera's entry also goes to the shared record (the next owner reads it there)."""
        snapshot = {k: m.to_json() for k, m in sorted(self._memory.items())}
        try:
            await asyncio.to_thread(atomic_write_json, self.path, snapshot)
        except OSError as exc:
            log.warning("cannot write the arming state file %s (%s): this change will not survive a restart",
                        self.path, exc)
        if self.shared is not None:
            try:
                await self.shared.save_arming_memory(name, self._memory[name].to_json())
            except StreamError as exc:
                log.warning("camera %s: arming not shared with the group (%s): another member taking the camera "
                            "over would not know it", name, exc)

    async def _shared_memory(self, name: str) -> None:
        """A camera this member starts: the group's record of its commands wins over the local file's (another
        member may have changed it since). An unreachable database keeps the local view, said once."""
        if self.shared is None:
            return
        try:
            found = await self.shared.arming_memory(name)
            if found is not None:
                self._memory[name] = ArmingMemory.from_json(found)
        except (StreamError, ValueError) as exc:
            log.warning("camera %s: the group's arming record is not readable (%s): using this member's own",
                        name, exc)

    # -- cameras ---------------------------------------------------------------------------------------
    async def attach(self, cam: CameraPipeline) -> Arming:
        """A camera starts: its arming from the config and what commands left; applied before it runs."""
        a = cam.cfg.arming
        self._cameras[cam.name] = (cam, a.build_schedule(), a.armed)
        async with self._lock:
            await self._shared_memory(cam.name)
            decision = await self._apply(cam.name, announce=True)
        self._wake.set()
        return decision

    def detach(self, name: str) -> None:
        self._cameras.pop(name, None)

    def decision(self, name: str) -> Arming:
        _, schedule, default = self._cameras[name]
        return decide(self._memory.get(name, ArmingMemory()), schedule=schedule, default_armed=default,
                      t=self.clock())

    async def _apply(self, name: str, *, announce: bool = False) -> Arming:
        """Decide now; apply a changed decision (or every one when announce) to the camera and the sinks."""
        cam = self._cameras[name][0]
        decision = self.decision(name)
        if decision == cam.arming and not announce:
            return decision
        was = cam.arming
        out = cam.set_arming(decision)
        if not decision.armed:
            self._drop_waiting(name, DISARMED_REASON)
        if out.messages:
            await self._dispatch(cam, out)
        if announce or decision.state != was.state:
            log.info("camera %s: %s (%s%s)", name, decision.state.replace("_", " "), decision.source,
                     "" if decision.until is None else
                     time.strftime(", until %Y-%m-%d %H:%M:%S %Z", time.localtime(decision.until)))
        self._publish(Message("arming", decision.to_json(), camera=name))
        self._on_change(cam)
        return decision

    # -- commands --------------------------------------------------------------------------------------
    async def set_armed(self, name: str, armed: bool) -> Arming:
        """A manual arm/disarm (cancels a snooze; holds until the schedule's next edge)."""
        return await self._command(name, lambda m: ArmingMemory(armed, self.clock(), None))

    async def snooze(self, name: str, minutes: float) -> Arming:
        """Not armed for `minutes` from now (0 cancels a snooze)."""
        if not 0 <= minutes:
            raise CommandError(f"minutes must be >= 0, got {minutes}")
        until = None if minutes == 0 else self.clock() + minutes * 60.0
        return await self._command(name, lambda m: ArmingMemory(m.manual, m.manual_at, until))

    async def _command(self, name: str, change: Callable[[ArmingMemory], ArmingMemory]) -> Arming:
        if name not in self._cameras:
            raise CommandError(f"no camera named {name!r}", status=404)
        async with self._lock:
            if name not in self._cameras:  # removed (or handed over) while this command waited
                raise CommandError(f"no camera named {name!r}", status=404)
            self._memory[name] = change(self._memory.get(name, ArmingMemory()))
            await self._save(name)
            decision = await self._apply(name)
        self._wake.set()
        return decision

    async def http_command(self, name: str, action: str, body: Any) -> Arming:
        """POST /api/cameras/{name}/arming {"armed": bool} or .../snooze {"minutes": N}; CommandError if bad."""
        field = {"arming": "armed", "snooze": "minutes"}.get(action)
        if field is None:
            raise CommandError(f"unknown action {action!r}", status=404)
        if not isinstance(body, dict) or set(body) != {field}:
            raise CommandError(f'the body must be {{"{field}": ...}} and nothing else')
        value = body[field]
        if field == "armed":
            if not isinstance(value, bool):
                raise CommandError("armed: must be true or false")
            return await self.set_armed(name, value)
        if isinstance(value, str):  # JSON has numbers: "30" is a client bug, not a length
            raise CommandError("minutes: must be a number, not a string")
        try:
            minutes = parse_minutes(value)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return await self.snooze(name, minutes)

    async def mqtt_command(self, topic_name: str, payload: bytes, *, retained: bool) -> None:
        """One message on a command topic: applied, or refused with one log line (nothing changes)."""
        try:
            name, command = self._parse_topic(topic_name)
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise CommandError(f"a payload of {len(payload):,} bytes is not a command")
            if retained:
                raise CommandError("a retained command is ignored (it would replay at every reconnect); "
                                   "publish commands without the retain flag")
            if command == "arming/set":
                await self.set_armed(name, parse_switch(payload))
            else:
                await self.snooze(name, parse_minutes(payload))
        except ValueError as exc:
            self.refused += 1
            log.warning("MQTT command on %s refused: %s", topic_name, exc)

    def _parse_topic(self, topic_name: str) -> tuple[str, str]:
        head = self.prefix + "/"
        if not topic_name.startswith(head):
            raise CommandError("not a command topic of this monitor")
        camera, _, command = topic_name[len(head):].partition("/")
        if command not in COMMANDS:
            raise CommandError("not a command topic of this monitor")
        if camera not in self._cameras:
            raise CommandError(f"no camera named {camera!r}", status=404)
        return camera, command

    # -- the clock -------------------------------------------------------------------------------------
    def recheck(self) -> None:
        """Re-decide every camera now (the clock task's next pass), e.g. after the clock was changed."""
        self._wake.set()

    def close(self) -> None:
        """Stop the clock task (it returns at its next wake-up, which this is)."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Re-decide every camera at its next schedule edge or snooze end (and at least every RECHECK_S)."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            now = self.clock()
            ends = [cam.arming.until for cam, _, _ in self._cameras.values() if cam.arming.until is not None]
            delay = RECHECK_S if not ends else min(RECHECK_S, max(0.0, min(ends) - now))
            # A timer, not wait_for: Python 3.11's wait_for can swallow a cancellation that races its timeout.
            timer = loop.call_later(delay + 0.001, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()  # here, not before the wait: a command during the pass below wakes the next one
            if self._closing:
                return
            for name in list(self._cameras):
                async with self._lock:
                    if name in self._cameras:
                        await self._apply(name)
