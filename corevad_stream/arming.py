"""Arming policy, pure: is a camera armed at instant t, and why (snooze, manual command, schedule, config).

No I/O and no clock of its own: every function takes the instant (unix seconds) it answers for, so the
DST tests can ask about any night of any year.

Schedule: weekly windows in one IANA time zone. A window names the local days it STARTS on, a start and an
end ("HH:MM", end may be "24:00"). A window whose end is not after its start crosses midnight: it ends at
`end` on the next local day ("22:00-06:00" on fri runs from Friday 22:00 to Saturday 06:00). Edges are
local wall-clock times turned into instants one by one, so a window stays right across DST changes (the
22:00-06:00 window is 7 real hours on the night the clocks go forward, 9 on the night they go back):
- a local time that does not exist (the hour skipped in spring, e.g. 02:30 in Europe/Berlin on the last
  Sunday of March) takes effect at the first instant after the gap (03:00 CEST), as cron runs a job whose
  time was skipped as soon as the clock is past it;
- a local time that happens twice (the hour repeated in autumn) means its first occurrence (PEP 495
  fold=0), so an edge happens once and a window never re-opens in the repeated hour.

How commands combine with the schedule (the choice a Frigate / Home Assistant user meets first): a manual
arm or disarm holds until the schedule's NEXT EDGE, then the schedule decides again (a thermostat's
"temporary hold"). Why not "until cleared": a camera disarmed by hand for a delivery and forgotten would
stay blind every night after; with a schedule, the next window edge restores it without anyone
remembering. Without a schedule a manual command holds until the next command. A snooze disarms until its
end whatever the schedule or the manual state says; a manual command cancels a running snooze (pressing
"arm" while snoozed must arm).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAY_NAMES", "MAX_SNOOZE_MINUTES", "Arming", "ArmingMemory", "Schedule", "Window", "decide",
           "parse_days", "parse_minutes", "parse_switch", "zone"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SNOOZE_MINUTES = 7 * 24 * 60  # a week: longer is a disarm, which the schedule or a command undoes
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

State = Literal["armed", "disarmed", "snoozed", "off_schedule"]
Source = Literal["config", "manual", "snooze", "schedule"]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. Europe/Berlin, America/New_York, UTC)") from None


def _clock(text: str, *, end: bool) -> int:
    """'HH:MM' -> minutes after local midnight; '24:00' only as an end."""
    m = _CLOCK.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a time of day HH:MM (00:00 to 23:59{', or 24:00' if end else ''})")
    minutes = int(m[1]) * 60 + int(m[2])
    if minutes > 24 * 60 or (minutes == 24 * 60 and not end):
        raise ValueError(f"{text!r}: {'24:00 is the latest end' if end else 'a start is 00:00 to 23:59'}")
    return minutes


def parse_days(items: Iterable[str]) -> frozenset[int]:
    """['mon-fri', 'sun'] -> weekday numbers (Monday 0); a range may wrap ('fri-mon')."""
    days: set[int] = set()
    for item in items:
        parts = str(item).strip().lower().split("-")
        if len(parts) > 2 or any(p not in DAY_NAMES for p in parts):
            raise ValueError(f"{item!r} is not a day (mon..sun) or a range of days (mon-fri)")
        a, b = DAY_NAMES.index(parts[0]), DAY_NAMES.index(parts[-1])
        days.update((a + k) % 7 for k in range((b - a) % 7 + 1))
    if not days:
        raise ValueError("a window needs at least one day")
    return frozenset(days)


@dataclass(frozen=True, slots=True)
class Window:
    """Local days it starts on (Monday 0), start and end in minutes after local midnight (end up to 1440)."""

    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, *, days: Sequence[str], start: str, end: str) -> Window:
        s, e = _clock(start, end=False), _clock(end, end=True)
        if s == e:
            raise ValueError(f"window {start}-{end} is empty; for a whole day write 00:00-24:00")
        return cls(parse_days(days), s, e)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


class Schedule:
    """Weekly windows in one time zone: armed inside any window."""

    def __init__(self, windows: Sequence[Window], *, timezone: str) -> None:
        if not windows:
            raise ValueError("a schedule needs at least one window")
        self.windows = tuple(windows)
        self.timezone = timezone
        self.tz = zone(timezone)

    def _instant(self, day: dt.date, minutes: int) -> float:
        """The instant the local clock shows `minutes` after midnight of `day` (see the module docstring)."""
        day += dt.timedelta(days=minutes // 1440)
        wall = dt.datetime(day.year, day.month, day.day, (minutes % 1440) // 60, minutes % 60, tzinfo=self.tz)
        t = wall.timestamp()  # fold=0: the first occurrence of a repeated time
        if dt.datetime.fromtimestamp(t, self.tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
            return t
        # Not a local time (skipped in spring): the gap's end, the first instant past it. fold=1 reads the
        # wall time with the offset after the change, which lands before the gap; bisect the transition.
        lo, hi = wall.replace(fold=1).timestamp(), t
        lo, hi = min(lo, hi), max(lo, hi)
        off = dt.datetime.fromtimestamp(lo, self.tz).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if dt.datetime.fromtimestamp(mid, self.tz).utcoffset() == off:
                lo = mid
            else:
                hi = mid
        return hi

    def _intervals(self, t: float, days_after: int) -> list[tuple[float, float]]:
        """[start, end) instants of every window starting between the local day before t and days_after."""
        today = dt.datetime.fromtimestamp(t, self.tz).date()
        out = []
        for k in range(-1, days_after + 1):
            day = today + dt.timedelta(days=k)
            for w in self.windows:
                if day.weekday() in w.days:
                    end = w.end + (1440 if w.crosses_midnight else 0)
                    out.append((self._instant(day, w.start), self._instant(day, end)))
        return out

    def armed_at(self, t: float) -> bool:
        return any(s <= t < e for s, e in self._intervals(t, 0))

    def next_edge(self, t: float) -> float:
        """The first instant after t at which the schedule's answer may change (a window starts or ends)."""
        edges = [x for s, e in self._intervals(t, 8) for x in (s, e) if x > t]
        return min(edges)  # every window recurs weekly: one lies within the next 8 days


@dataclass(frozen=True, slots=True)
class ArmingMemory:
    """What commands left behind for one camera (persisted across restarts).

    manual: the last manual command (True arm, False disarm), None if there was none; manual_at: when
    (unix s); snooze_until: the end of a snooze, None if none."""

    manual: bool | None = None
    manual_at: float | None = None
    snooze_until: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"manual": self.manual, "manual_at": self.manual_at, "snooze_until": self.snooze_until}

    @classmethod
    def from_json(cls, d: object) -> ArmingMemory:
        """The persisted form back; ValueError naming the field for anything else."""
        if not isinstance(d, dict):
            raise ValueError("an entry is not a mapping")
        manual, at, until = d.get("manual"), d.get("manual_at"), d.get("snooze_until")
        if manual is not None and not isinstance(manual, bool):
            raise ValueError("manual: not true, false or null")
        for name, v in (("manual_at", at), ("snooze_until", until)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"{name}: not a number or null")
        if (manual is None) != (at is None):
            raise ValueError("manual and manual_at: give both or neither")
        return cls(manual, None if at is None else float(at), None if until is None else float(until))


@dataclass(frozen=True, slots=True)
class Arming:
    """The answer: armed or not, the state shown, until when it holds (unix s; None: until a command),
    and what decided it. to_json is the `arming` object of /api/cameras, MQTT and the status."""

    armed: bool
    state: State
    until: float | None
    source: Source

    def to_json(self) -> dict[str, object]:
        return {"armed": self.armed, "state": self.state,
                "until": None if self.until is None else round(self.until, 3), "source": self.source}


def decide(memory: ArmingMemory, *, schedule: Schedule | None, default_armed: bool, t: float) -> Arming:
    """Is the camera armed at t, and why: snooze, then a manual command still holding, then the schedule,
    then the config's default (module docstring)."""
    if memory.snooze_until is not None and t < memory.snooze_until:
        return Arming(False, "snoozed", memory.snooze_until, "snooze")
    if memory.manual is not None and memory.manual_at is not None:
        until = schedule.next_edge(memory.manual_at) if schedule is not None else None
        if until is None or t < until:
            return Arming(memory.manual, "armed" if memory.manual else "disarmed", until, "manual")
    if schedule is not None:
        on = schedule.armed_at(t)
        return Arming(on, "armed" if on else "off_schedule", schedule.next_edge(t), "schedule")
    return Arming(default_armed, "armed" if default_armed else "disarmed", None, "config")


def parse_switch(payload: bytes | str) -> bool:
    """An arming command's payload: ON/OFF (Home Assistant's switch), also true/false, 1/0, arm/disarm."""
    text = (payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload).strip().lower()
    if text in ("on", "true", "1", "arm", "armed"):
        return True
    if text in ("off", "false", "0", "disarm", "disarmed"):
        return False
    raise ValueError(f"payload {text[:40]!r} is not ON or OFF")


def parse_minutes(value: object) -> float:
    """A snooze length in minutes: a number 0..MAX_SNOOZE_MINUTES (0 cancels); text from MQTT is parsed."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"minutes {text[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"minutes must be a number, got {type(value).__name__}")
    if not 0 <= value <= MAX_SNOOZE_MINUTES:  # NaN fails this too
        raise ValueError(f"minutes must be 0..{MAX_SNOOZE_MINUTES} (0 cancels), got {value}")
    return float(value)
