"""The arming policy (corevad_stream.arming), pure: weekly windows across midnight and both DST changes,
non-existent and repeated local times, how snooze / manual commands / the schedule combine, the payload
parsers and the config's one-line errors."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from corevad_stream.arming import (
    Arming,
    ArmingMemory,
    Schedule,
    Window,
    decide,
    parse_days,
    parse_minutes,
    parse_switch,
)
from corevad_stream.config import CameraConfig

BERLIN = "Europe/Berlin"


def at(y: int, mo: int, d: int, h: int, mi: int = 0, *, tz: str = BERLIN, fold: int = 0) -> float:
    """The instant a clock in `tz` shows this local time (fold=1: the second pass of a repeated hour)."""
    return dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz), fold=fold).timestamp()


def utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def night(days: list[str] | None = None) -> Schedule:
    return Schedule([Window.parse(days=days or ["mon-sun"], start="22:00", end="06:00")], timezone=BERLIN)


def test_a_night_window_spans_midnight_and_belongs_to_the_day_it_starts() -> None:
    s = night(["fri"])  # Friday 22:00 to Saturday 06:00 only
    assert not s.armed_at(at(2026, 6, 5, 21, 59))  # Friday
    assert s.armed_at(at(2026, 6, 5, 22, 0)) and s.armed_at(at(2026, 6, 6, 5, 59))  # into Saturday
    assert not s.armed_at(at(2026, 6, 6, 6, 0))  # the end is exclusive
    assert not s.armed_at(at(2026, 6, 6, 23, 0))  # Saturday night is not Friday's window
    assert not s.armed_at(at(2026, 6, 5, 3, 0))  # Friday early morning belongs to Thursday's (absent) window


def test_the_night_window_across_both_dst_changes_in_berlin() -> None:
    s = night()
    # Spring forward: Sunday 29 March 2026, 02:00 CET -> 03:00 CEST. The night is 7 real hours.
    start = s.next_edge(at(2026, 3, 28, 21, 0))
    end = s.next_edge(start)
    assert (utc(start), utc(end)) == ("2026-03-28 21:00", "2026-03-29 04:00")  # 22:00 CET, 06:00 CEST
    assert end - start == 7 * 3600
    assert s.armed_at(at(2026, 3, 29, 3, 30)) and not s.armed_at(at(2026, 3, 29, 6, 0))
    # Fall back: Sunday 25 October 2026, 03:00 CEST -> 02:00 CET. The night is 9 real hours.
    start = s.next_edge(at(2026, 10, 24, 21, 0))
    end = s.next_edge(start)
    assert (utc(start), utc(end)) == ("2026-10-24 20:00", "2026-10-25 05:00")  # 22:00 CEST, 06:00 CET
    assert end - start == 9 * 3600
    # Armed through both passes of the repeated hour.
    assert s.armed_at(at(2026, 10, 25, 2, 30, fold=0)) and s.armed_at(at(2026, 10, 25, 2, 30, fold=1))


def test_an_edge_at_a_skipped_local_time_takes_effect_when_the_gap_ends() -> None:
    s = Schedule([Window.parse(days=["sun"], start="02:30", end="04:00")], timezone=BERLIN)
    start = s.next_edge(at(2026, 3, 29, 0, 0))
    assert utc(start) == "2026-03-29 01:00"  # 03:00 CEST: the first instant after 02:00-03:00 was skipped
    assert not s.armed_at(start - 1) and s.armed_at(start)
    assert utc(s.next_edge(start)) == "2026-03-29 02:00"  # 04:00 CEST


def test_an_edge_at_a_repeated_local_time_happens_once_at_its_first_occurrence() -> None:
    s = Schedule([Window.parse(days=["sat"], start="22:00", end="02:30")], timezone=BERLIN)
    end = s.next_edge(s.next_edge(at(2026, 10, 24, 21, 0)))
    assert utc(end) == "2026-10-25 00:30"  # 02:30 CEST, the first 02:30
    # The clock shows 02:00-02:59 again an hour later (CET): the window does not re-open.
    assert not s.armed_at(at(2026, 10, 25, 2, 15, fold=1)) and not s.armed_at(at(2026, 10, 25, 2, 45, fold=1))
    assert s.armed_at(end - 1) and not s.armed_at(end)


def test_windows_in_another_zone_and_a_whole_day() -> None:
    s = Schedule([Window.parse(days=["sat-sun"], start="00:00", end="24:00")], timezone="America/New_York")
    assert s.armed_at(at(2026, 6, 6, 0, 0, tz="America/New_York"))
    assert s.armed_at(at(2026, 6, 7, 23, 59, tz="America/New_York"))
    assert not s.armed_at(at(2026, 6, 8, 0, 0, tz="America/New_York"))  # Monday
    assert parse_days(["fri-mon"]) == {4, 5, 6, 0}  # a range may wrap the week


def test_snooze_beats_manual_which_holds_until_the_next_schedule_edge() -> None:
    s = night()
    noon = at(2026, 6, 5, 12, 0)
    assert decide(ArmingMemory(), schedule=s, default_armed=True, t=noon) == Arming(
        False, "off_schedule", at(2026, 6, 5, 22, 0), "schedule")
    # Armed by hand at noon: it holds until the window opens at 22:00 (the schedule agrees from then on) ...
    armed = ArmingMemory(True, noon, None)
    assert decide(armed, schedule=s, default_armed=True, t=noon + 60) == Arming(
        True, "armed", at(2026, 6, 5, 22, 0), "manual")
    # ... disarmed by hand at 23:00, inside the window: it holds until 06:00, then the schedule decides again.
    late = at(2026, 6, 5, 23, 0)
    off = ArmingMemory(False, late, None)
    assert decide(off, schedule=s, default_armed=True, t=late + 60).state == "disarmed"
    assert decide(off, schedule=s, default_armed=True, t=at(2026, 6, 6, 5, 59)).source == "manual"
    after = decide(off, schedule=s, default_armed=True, t=at(2026, 6, 6, 6, 0))
    assert after.source == "schedule" and after.state == "off_schedule"
    # The next night the schedule arms the camera again: a forgotten disarm does not blind it for good.
    assert decide(off, schedule=s, default_armed=True, t=at(2026, 6, 6, 22, 30)).state == "armed"
    # A snooze beats both, and ends by itself.
    snoozed = ArmingMemory(True, noon, noon + 600)
    assert decide(snoozed, schedule=s, default_armed=True, t=noon + 599) == Arming(
        False, "snoozed", noon + 600, "snooze")
    assert decide(snoozed, schedule=s, default_armed=True, t=noon + 600).state == "armed"


def test_without_a_schedule_a_manual_command_holds_until_the_next_command() -> None:
    assert decide(ArmingMemory(), schedule=None, default_armed=False, t=0) == Arming(False, "disarmed", None, "config")
    assert decide(ArmingMemory(True, 5.0, None), schedule=None, default_armed=False, t=1e12) == Arming(
        True, "armed", None, "manual")


def test_payloads_and_persisted_memory_are_parsed_strictly() -> None:
    assert parse_switch(b"ON") is True and parse_switch(" off\n") is False
    for bad in (b"MAYBE", b"", b"{\"armed\": true}"):
        with pytest.raises(ValueError, match="is not ON or OFF"):
            parse_switch(bad)
    assert parse_minutes(b"30") == 30.0 and parse_minutes(0) == 0.0 and parse_minutes("2.5") == 2.5
    for bad, why in ((b"soon", "not a number"), (-1, "0..10080"), (b"nan", "0..10080"), (10081, "0..10080"),
                     (True, "must be a number")):
        with pytest.raises(ValueError, match=why):
            parse_minutes(bad)
    m = ArmingMemory(False, 12.5, 99.0)
    assert ArmingMemory.from_json(m.to_json()) == m
    with pytest.raises(ValueError, match="manual: not true"):
        ArmingMemory.from_json({"manual": "yes", "manual_at": 1})
    with pytest.raises(ValueError, match="give both"):
        ArmingMemory.from_json({"manual": True})


@pytest.mark.parametrize(("arming", "message"), [
    ({"timezone": "Mars/Olympus"}, "unknown IANA time zone 'Mars/Olympus'"),
    ({"schedule": [{"start": "22:00", "end": "06:00"}]}, "timezone: required with a schedule"),
    ({"timezone": BERLIN, "schedule": [{"start": "7:00", "end": "09:00"}]}, "'7:00' is not a time of day"),
    ({"timezone": BERLIN, "schedule": [{"start": "24:00", "end": "09:00"}]}, "a start is 00:00 to 23:59"),
    ({"timezone": BERLIN, "schedule": [{"start": "09:00", "end": "09:00"}]}, "is empty"),
    ({"timezone": BERLIN, "schedule": [{"days": ["someday"], "start": "09:00", "end": "10:00"}]}, "'someday'"),
    ({"armed": False, "timezone": BERLIN, "schedule": [{"start": "09:00", "end": "10:00"}]}, "drop one"),
    ({"armd": True}, "armd"),
])
def test_bad_arming_config_is_one_error_naming_the_field(arming: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError) as info:
        CameraConfig(name="gate", url="x.mp4", arming=arming)
    assert message in str(info.value) and "arming" in str(info.value)


def test_the_config_builds_the_schedule_it_describes() -> None:
    cfg = CameraConfig(name="gate", url="x.mp4", arming={"timezone": BERLIN, "schedule": [
        {"days": ["mon-fri"], "start": "18:00", "end": "07:30"}, {"days": ["sat", "sun"], "start": "00:00",
                                                                 "end": "24:00"}]})
    s = cfg.arming.build_schedule()
    assert s is not None and s.armed_at(at(2026, 6, 9, 7, 0)) and not s.armed_at(at(2026, 6, 9, 8, 0))  # Tuesday
    assert not s.armed_at(at(2026, 6, 8, 7, 0))  # Monday morning: Sunday's window ended at 24:00, none began
    assert s.armed_at(at(2026, 6, 6, 12, 0))  # Saturday noon
    assert CameraConfig(name="gate", url="x.mp4").arming.build_schedule() is None


def test_the_home_assistant_templates_read_the_arming_payload() -> None:
    """The switch's and the snooze number's value templates, rendered by Jinja as Home Assistant does (its
    now() given), on the payloads the monitor publishes."""
    import jinja2

    from corevad_stream.sinks.ha_discovery import camera_configs

    configs = camera_configs("homeassistant", "cv", "gate")
    switch = next(c for t, c in configs.items() if "/switch/" in t)
    number = next(c for t, c in configs.items() if "/number/" in t)
    t0 = 1_800_000_000.0
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - plain text, as in Home Assistant

    def render(template: str, payload: Arming) -> str:
        return env.from_string(template).render(
            value_json=payload.to_json(), now=lambda: dt.datetime.fromtimestamp(t0, dt.UTC)).strip()

    assert render(switch["value_template"], Arming(True, "armed", None, "config")) == switch["payload_on"] == "ON"
    assert render(switch["value_template"], Arming(False, "snoozed", t0 + 60, "snooze")) == "OFF"
    assert render(number["value_template"], Arming(False, "snoozed", t0 + 14.5 * 60, "snooze")) == "15"
    assert render(number["value_template"], Arming(False, "snoozed", t0 - 5, "snooze")) == "0"  # ended meanwhile
    assert render(number["value_template"], Arming(False, "disarmed", None, "manual")) == "0"
