import hashlib
import io
import json

import numpy as np
import pytest

from corevad.benchmarks import concat_gt, load_benchmark, load_responses, match_responses
from corevad.errors import AnnotationError, ResponseCountError

pytestmark = pytest.mark.data


def _git_blob_id(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()  # git's blob id


def test_ucf_crime_ground_truth_matches_the_authors(shared_data):
    videos = load_benchmark("ucf-crime", shared_data / "ucf_crime" / "test_annotations.tsv")
    gt = concat_gt(videos)
    assert len(videos) == 290
    assert sum(v.is_anomalous for v in videos) == 140
    assert gt.size == 1_111_808 and int(gt.sum()) == 84_182
    # the git blob id of the authors' gt_ucf.npy (content absent from their public snapshot)
    assert _git_blob_id(gt) == "9f1791f3e4515ee5811f52323fbf9d54b2f6d04e"
    order = [line.strip().split("/")[-1][:-4] for line in
             (shared_data / "ucf_crime" / "Anomaly_Test.txt").read_text().splitlines() if line.strip()]
    assert [v.name for v in videos] == order


def test_xd_violence_ground_truth_matches_the_authors(shared_data):
    videos = load_benchmark("xd-violence", shared_data / "xd_violence" / "xd_annotations.json")
    gt = concat_gt(videos)
    assert len(videos) == 800 and sum(v.is_anomalous for v in videos) == 500
    assert gt.size == 2_335_801 and int(gt.sum()) == 538_324
    assert _git_blob_id(gt) == "b6744a20f05910290a2037c8ebc6e5bbdbe0b9da"
    assert all("#" not in v.name for v in videos)


def test_recorded_responses_have_one_answer_per_segment(shared_data):
    videos = load_benchmark("ucf-crime", shared_data / "ucf_crime" / "test_annotations.tsv")
    responses = load_responses(shared_data / "ucf_crime" / "VLM_responses_LRC_ucf.json")
    pairs, skipped = match_responses(videos, responses)
    assert len(pairs) == 290 and not skipped
    assert sum(len(a) for _, a in pairs) == 37_188


def test_end_is_exclusive_and_clipped(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("video\tclass\tframes\tstart1\tend1\tstart2\tend2\n"
                 "A\tArson\t10\t2\t4\t8\t12\n"
                 "B\tNormal\t5\t-1\t-1\t-1\t-1\n")
    a, b = load_benchmark("ucf-crime", f)
    assert a.gt.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    assert not b.is_anomalous and b.gt.sum() == 0


@pytest.mark.parametrize(("line", "message"), [
    ("A\tArson\tten\t2\t4\t-1\t-1", "frames is not an integer"),
    ("A\tArson\t10\t2\t4", "expected 7 tab-separated fields"),
    ("A\tArson\t10\t6\t4\t-1\t-1", "bad span"),
])
def test_malformed_annotation_names_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.tsv"
    f.write_text("video\tclass\tframes\tstart1\tend1\tstart2\tend2\nB\tNormal\t5\t-1\t-1\t-1\t-1\n" + line + "\n")
    with pytest.raises(AnnotationError, match=message) as e:
        load_benchmark("ucf-crime", f)
    assert e.value.line == 3 and str(f) in str(e.value)


def test_malformed_xd_entry_names_it(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps([{"video": "a", "temporal_label": [-1, -1], "length": 9, "label": "0"},
                             {"video": "b", "temporal_label": [1, 2], "label": "1"}]))
    with pytest.raises(AnnotationError, match="entry 1"):
        load_benchmark("xd-violence", f)


def test_response_count_errors_name_video_and_numbers(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("video\tclass\tframes\tstart1\tend1\tstart2\tend2\n"
                 "A\tArson\t61\t2\t4\t-1\t-1\nB\tNormal\t30\t-1\t-1\t-1\t-1\n")
    videos = load_benchmark("ucf-crime", f)
    with pytest.raises(ResponseCountError, match=r"'A' has 2 responses but its 3 segments need 3"):
        match_responses(videos, {"A": ["x", "y"], "B": ["z"]})
    with pytest.raises(ResponseCountError, match=r"'B' is missing"):
        match_responses(videos, {"A": ["x", "y", "z"]})
    pairs, skipped = match_responses(videos, {"A": ["x", "y"], "B": ["z"]}, skip_bad=True)
    assert [v.name for v, _ in pairs] == ["B"]
    assert (skipped[0].video, skipped[0].expected, skipped[0].got) == ("A", 3, 2)


def test_responses_file_problems_are_data_errors(tmp_path):
    from corevad.errors import DataError

    with pytest.raises(DataError, match="nope.json does not exist"):
        load_responses(tmp_path / "nope.json")
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"a#1.mp4": ["Normal scenes. x", None]}))
    assert load_responses(f) == {"a1": ["Normal scenes. x", ""]}
