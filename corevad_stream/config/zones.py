"""A camera's `zones`: named polygons where anomalies matter, and the geometry checks that need no frame.

Units are chosen per zone with `units`: `relative` (the default: x and y are fractions 0..1 of the frame's
width and height, so a zone survives a resolution change) or `px` (pixels of the decoded frame, edges at
0..width and 0..height). A relative zone is fully checked here; a pixel zone can only be checked against
the frame size once the first frame is decoded (corevad_stream.zones), which fails that camera alone.
Degenerate polygons are refused here because they would crop to nothing or to an arbitrary sliver: fewer
than 3 points, a repeated point, zero area, or edges that cross, touch or fold back onto each other (a
bow-tie's inside is ambiguous).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from corevad.schema import StrictModel

__all__ = ["MAX_ZONES", "MAX_ZONE_POINTS", "ZoneConfig", "polygon_area", "zone_problem", "zones_problem"]

MAX_ZONES = 16
MAX_ZONE_POINTS = 64
MAX_PIXEL = 16384.0  # larger than any camera frame; a bound so a typo (1e9) is an error, not a 0 px crop
ZONE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\- ]{0,63}$"

Point = tuple[float, float]


class ZoneConfig(StrictModel):
    """One zone: a simple polygon in pixel or relative coordinates."""

    name: str = Field(..., pattern=ZONE_NAME_PATTERN, description="The zone's name (letters, digits, space, _ "
                                                                  "and -), unique within the camera.")
    points: list[Point] = Field(..., max_length=MAX_ZONE_POINTS,
                                description="The polygon's corners in order, [[x, y], ...] (at least 3).")
    units: Literal["relative", "px"] = Field("relative", description="relative: fractions 0..1 of the frame's "
                                                                     "width and height; px: pixels of the frame.")
    mask_outside: bool = Field(False, description="Black out the crop's pixels outside this polygon (else the "
                                                  "zone keeps its whole bounding box).")


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, q: Point, r: Point) -> bool:
    """r, collinear with p-q, lies within the segment's box."""
    return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])


def _segments_meet(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the closed segments p1-p2 and q1-q2 share a point (crossing or touching)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return ((d1 == 0 and _on_segment(q1, q2, p1)) or (d2 == 0 and _on_segment(q1, q2, p2))
            or (d3 == 0 and _on_segment(p1, p2, q1)) or (d4 == 0 and _on_segment(p1, p2, q2)))


def polygon_area(points: Sequence[Point]) -> float:
    """The shoelace area (absolute)."""
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    return abs(twice) / 2.0


def zone_problem(zone: ZoneConfig) -> str | None:
    """What is wrong with the zone's polygon on its own (None: nothing), as a phrase for an error line."""
    pts = zone.points
    if len(pts) < 3:
        return f"a polygon needs at least 3 points, got {len(pts)}"
    if zone.units == "relative":
        for i, (x, y) in enumerate(pts):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                return (f"point {i} [{x:g}, {y:g}] is outside 0..1 (relative coordinates; "
                        "set units: px for pixels)")
    else:
        for i, (x, y) in enumerate(pts):
            if not (0.0 <= x <= MAX_PIXEL and 0.0 <= y <= MAX_PIXEL):
                return f"point {i} [{x:g}, {y:g}] is outside the frame (pixels from 0 to {MAX_PIXEL:g})"
    if len(set(pts)) != len(pts):
        return "a point is repeated"
    n = len(pts)
    for k in range(n if n > 3 else 0):  # a triangle that folds back has zero area, said below
        a, b, c = pts[k - 1], pts[k], pts[(k + 1) % n]
        if _cross(a, b, c) == 0 and (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0:
            return f"edges {(k - 1) % n} and {k} fold back onto each other at point {k}"
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbouring edges share a corner by construction
            if _segments_meet(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                return f"edges {i} and {j} cross or touch (the polygon must not intersect itself)"
    if polygon_area(pts) <= 0.0:
        return "the polygon has zero area"
    return None


def zones_problem(camera: str, zones: Sequence[ZoneConfig]) -> str | None:
    """The first problem of a camera's zones as one line naming the camera and the zone (None: none)."""
    seen: set[str] = set()
    for zone in zones:
        if zone.name in seen:
            return f"camera {camera!r}, zone {zone.name!r}: the name is used twice"
        seen.add(zone.name)
        problem = zone_problem(zone)
        if problem is not None:
            return f"camera {camera!r}, zone {zone.name!r}: {problem}"
    return None
