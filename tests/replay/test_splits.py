"""The fixed tune/test split: deterministic, stratified by class, order-independent."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from corevad.splits import split_names, split_videos


@dataclass(frozen=True)
class V:
    name: str
    cls: str


VIDEOS = [V("b2", "B"), V("a3", "A"), V("a1", "A"), V("n1", "Normal"), V("a2", "A"), V("b1", "B"),
          V("n2", "Normal")]


def test_alternates_sorted_names_within_each_class() -> None:
    assert split_names(VIDEOS) == {"a1": "tune", "a2": "test", "a3": "tune", "b1": "tune", "b2": "test",
                                   "n1": "tune", "n2": "test"}


def test_halves_partition_the_set_and_keep_input_order() -> None:
    tune, test = split_videos(VIDEOS, "tune"), split_videos(VIDEOS, "test")
    assert [v.name for v in tune] == ["a3", "a1", "n1", "b1"]
    assert sorted(v.name for v in tune + test) == sorted(v.name for v in VIDEOS)
    assert split_videos(VIDEOS, "all") == VIDEOS


def test_does_not_depend_on_input_order() -> None:
    assert split_names(VIDEOS[::-1]) == split_names(VIDEOS)


def test_rejects_duplicates_and_unknown_half() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        split_names([V("a", "A"), V("a", "B")])
    with pytest.raises(ValueError, match="unknown half"):
        split_videos(VIDEOS, "train")


@pytest.mark.data
def test_ucf_crime_split_is_balanced(shared_data) -> None:
    from corevad.benchmarks import load_benchmark

    videos = load_benchmark("ucf-crime", shared_data / "ucf_crime" / "test_annotations.tsv")
    which = split_names(videos)
    assert len(which) == 290
    for cls in {v.cls for v in videos}:
        halves = [which[v.name] for v in videos if v.cls == cls]
        assert abs(halves.count("tune") - halves.count("test")) <= 1, cls
    assert sum(1 for h in which.values() if h == "tune") == 151
