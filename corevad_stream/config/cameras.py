"""Section `cameras`: one entry per camera or video file (and the frame-less replay URL it may name)."""

from __future__ import annotations

import math
import re
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from corevad.prompt import CONTEXT_MAX_CHARS, check_context
from corevad.schema import StrictModel

from ..arming import Schedule, Window, zone
from ..redact import redact
from .runtime import OverloadPolicy
from .zones import MAX_ZONES, ZoneConfig, zones_problem

__all__ = ["DEFAULT_FPS", "NAME_PATTERN", "ArmingConfig", "ArmingWindowConfig", "CameraConfig", "frameless_spec"]

# Camera names end up in MQTT topics, file names and URLs: letters, digits, _ and - only.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
DISPLAY_NAME_MAX_CHARS = 80  # a phone notification's title starts with it
DEFAULT_FPS = 30.0  # frame-less replay, and streams that report no usable frame rate
MAX_FPS = 240.0
# Frame-less replay paces answers, not frames: the demo's --speed 10 asks for 300 "frames" a second.
_MAX_FRAMELESS_FPS = 100_000.0
SAMPLE_SCHEME = "sample://"
FRAMELESS_SCHEME = "frameless://"


def frameless_spec(url: str) -> tuple[int | None, float]:
    """frameless://<n_frames>?fps=30 -> (n_frames, or None for endless; fps). ValueError naming the bad part."""
    parts = urlsplit(url)
    n = parts.netloc or parts.path.strip("/")
    if n and not (n.isdigit() and n.isascii()):
        raise ValueError(f"frameless://<frames>: {n!r} is not a whole number of frames")
    unknown = sorted(set(parse_qs(parts.query, keep_blank_values=True)) - {"fps"})
    if unknown:
        raise ValueError(f"frameless:// takes only ?fps=, not {', '.join(unknown)}")
    values = parse_qs(parts.query, keep_blank_values=True).get("fps", [str(DEFAULT_FPS)])
    try:
        fps = float(values[-1])
    except ValueError:
        raise ValueError(f"frameless:// ?fps={values[-1]!r} is not a number") from None
    if not (math.isfinite(fps) and 0 < fps <= _MAX_FRAMELESS_FPS):
        # fps=0 divided the frame period by zero in the source thread: a crash loop, not an error line.
        raise ValueError(f"frameless:// ?fps={values[-1]} must be > 0 and <= {_MAX_FRAMELESS_FPS:g}")
    return (int(n) if n else None), fps


class ArmingWindowConfig(StrictModel):
    """One weekly window of an arming schedule (local time; see corevad_stream.arming for DST and midnight)."""

    days: list[str] = Field(default_factory=lambda: ["mon-sun"], min_length=1, max_length=7,
                            description="Local days the window STARTS on: mon..sun or ranges (mon-fri).")
    start: str = Field(..., description="Local start, HH:MM.")
    end: str = Field(..., description="Local end, HH:MM or 24:00; not after start: it ends the next day.")

    def window(self) -> Window:
        return Window.parse(days=self.days, start=self.start, end=self.end)

    @model_validator(mode="after")
    def _check(self) -> ArmingWindowConfig:
        self.window()  # ValueError names the bad day or time
        return self


class ArmingConfig(StrictModel):
    """Whether the camera is watched (corevad_stream.arming): a schedule, or always armed unless disarmed.
    Commands (MQTT, Home Assistant, the page) change it at run time; the state survives restarts."""

    armed: bool = Field(True, description="Without a schedule: armed until a command says otherwise. "
                                          "False starts the camera disarmed.")
    timezone: str | None = Field(None, max_length=64,
                                 description="IANA time zone of the schedule (e.g. Europe/Berlin); required "
                                             "with a schedule.")
    schedule: list[ArmingWindowConfig] = Field(default_factory=list, max_length=64,
                                               description="Weekly windows in which the camera is armed; "
                                                           "empty: no schedule.")

    @model_validator(mode="after")
    def _check(self) -> ArmingConfig:
        if self.timezone is not None:
            zone(self.timezone)
        if self.schedule and self.timezone is None:
            raise ValueError("timezone: required with a schedule (an IANA name such as Europe/Berlin)")
        if self.schedule and not self.armed:
            raise ValueError("armed: false with a schedule: the schedule decides when the camera is armed; "
                             "drop one of them")
        return self

    def build_schedule(self) -> Schedule | None:
        if not self.schedule or self.timezone is None:
            return None
        return Schedule([w.window() for w in self.schedule], timezone=self.timezone)


class CameraConfig(StrictModel):
    """One camera (RTSP or any URL FFmpeg opens) or video file."""

    name: str = Field(..., pattern=NAME_PATTERN, description="Topic-safe name: letters, digits, _ and -.")
    url: str = Field(..., min_length=1, max_length=4096,
                     description="rtsp://..., http(s)://..., a file path, sample://<name> (a clip generated on "
                                 "first use; sample://demo), or frameless://<frames>?fps=<fps> (replay backends).")
    enabled: bool = Field(True, description="False skips the camera.")
    fps: float | None = Field(None, gt=0, le=MAX_FPS, description="Override the stream's reported frame rate.")
    rate: Literal["native", "fast"] = Field("native", description="Files: play at the native frame rate "
                                                                  "(live simulation) or as fast as possible.")
    loop: bool = Field(False, description="Files: start again at the end (demo cameras).")
    overload_policy: OverloadPolicy | None = Field(None, description="Override runtime.overload_policy.")
    alerts: dict[str, Any] = Field(default_factory=dict, description="Per-camera overrides of `alerts`.")
    refinement: dict[str, Any] = Field(default_factory=dict, description="Per-camera overrides of "
                                                                         "`refinement`.")
    context: str | None = Field(None, description=(
        f"What is normal and what matters at this camera's place (at most {CONTEXT_MAX_CHARS} characters, "
        "e.g. 'A loading dock: forklifts and people carrying boxes are normal at any hour.'). Added to the "
        "prompt (corevad.prompt.compose_prompt); `check` and /api/cameras show the result. None: the "
        "paper's prompt unchanged."))
    display_name: str | None = Field(None, description=(
        f"The name people read (notification titles); at most {DISPLAY_NAME_MAX_CHARS} characters, one line. "
        "None: `name`."))
    arming: ArmingConfig = Field(default_factory=ArmingConfig, description="Armed or not, a weekly "
                                 "schedule (corevad_stream.arming); commands change it at run time.")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=MAX_ZONES,
                                    description="Polygons where anomalies matter: the model sees only their union "
                                                "bounding box (see corevad_stream.config.zones).")

    @field_validator("context")
    @classmethod
    def _context(cls, text: str | None, info: ValidationInfo) -> str | None:
        if text is None:
            return None
        try:
            return check_context(text)
        except ValueError as exc:
            raise ValueError(f"camera {info.data.get('name', '?')!r}: context {exc}") from None

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, text: str | None) -> str | None:
        if text is None or not text.strip():
            return None
        text = text.strip()
        if len(text) > DISPLAY_NAME_MAX_CHARS:
            raise ValueError(f"is {len(text)} characters; at most {DISPLAY_NAME_MAX_CHARS}")
        if not text.isprintable():
            raise ValueError("holds a control character or a line break (one printable line)")
        return text

    @property
    def title_name(self) -> str:
        """The camera's name as people read it: display_name, else name."""
        return self.display_name or self.name

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if "\0" in url:
            raise ValueError("the URL holds a NUL character")
        if url.startswith(SAMPLE_SCHEME):
            # The name becomes a file under the cache: sample://../../x would write outside it.
            name = url[len(SAMPLE_SCHEME):]
            if name and not _NAME.match(name):
                raise ValueError(f"sample://{name}: a sample is named with letters, digits, _ and - only "
                                 "(e.g. sample://demo)")
        elif url.startswith(FRAMELESS_SCHEME):
            frameless_spec(url)
        return url

    @model_validator(mode="after")
    def _zones(self) -> CameraConfig:
        problem = zones_problem(self.name, self.zones)
        if problem is not None:
            raise ValueError(problem)
        if self.zones and self.url.startswith(FRAMELESS_SCHEME):
            raise ValueError(f"camera {self.name!r}: zones need frames; a frameless:// camera has none")
        return self

    @property
    def is_file(self) -> bool:
        """Files, generated samples and frame-less replay: finite sources read at their own pace."""
        return "://" not in self.url or self.url.startswith(("file://", SAMPLE_SCHEME, FRAMELESS_SCHEME))

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    def __repr_args__(self) -> Any:  # never show credentials, in repr, str or tracebacks
        for key, value in super().__repr_args__():
            yield key, (self.safe_url if key == "url" else value)
