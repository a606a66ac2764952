"""The fixed tune/test split of benchmark videos used for every parameter chosen by looking at scores.

Rule (deterministic, by video, stratified by class): within each class, sort the video names
(Python string order) and alternate: positions 0, 2, 4, ... go to "tune", 1, 3, 5, ... to "test".
Each class therefore puts ceil(n/2) videos in tune and floor(n/2) in test, and the split does not
depend on the annotation file's order, on other classes, or on any random state.
Parameters are chosen on "tune" and reported on "test" (held out), with the full set beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol, TypeVar

HALVES = ("tune", "test")


class _HasNameClass(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def cls(self) -> str: ...


V = TypeVar("V", bound=_HasNameClass)


def split_names(videos: Sequence[_HasNameClass]) -> dict[str, str]:
    """Video name -> 'tune' | 'test' by the rule in the module docstring."""
    by_cls: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for v in videos:
        if v.name in seen:
            raise ValueError(f"video {v.name!r} appears twice; a split by video needs unique names")
        seen.add(v.name)
        by_cls[v.cls].append(v.name)
    out = {}
    for names in by_cls.values():
        for k, name in enumerate(sorted(names)):
            out[name] = HALVES[k % 2]
    return out


def split_videos(videos: Sequence[V], half: str) -> list[V]:
    """The videos of one half ('tune', 'test') or all of them ('all'), keeping the input order."""
    if half == "all":
        return list(videos)
    if half not in HALVES:
        raise ValueError(f"unknown half {half!r}; choose 'tune', 'test' or 'all'")
    which = split_names(videos)
    return [v for v in videos if which[v.name] == half]


__all__ = ["HALVES", "split_names", "split_videos"]
