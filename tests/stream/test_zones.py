"""Zones: config errors (one line, exit 2, naming camera and zone), the pixel rule, crops and masks of real
decoded frames through the real file source and segmenter, a pixel zone past the frame failing its camera
alone, the snapshot's outlines, and the boxes /api/cameras shows."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from corevad.segments import sample_indices
from corevad_stream import probes
from corevad_stream.batcher import Batcher
from corevad_stream.camera_factory import build_camera
from corevad_stream.cli import main as cli_main
from corevad_stream.config import CameraConfig, ReconnectConfig, config_from_dict
from corevad_stream.config.zones import ZoneConfig
from corevad_stream.dispatch import encode_jpeg
from corevad_stream.entities import CameraCounters, CameraStatus, SegmentJob, StatusChange
from corevad_stream.errors import ZoneError
from corevad_stream.ring import FrameRing
from corevad_stream.segmenter import Segmenter, prepare_frame
from corevad_stream.sources import VideoSource
from corevad_stream.testing.clips import make_test_video
from corevad_stream.zones import CameraZones, polygon_mask, resolve_zones, zones_overview

SIZE = 32  # the model's square input in these tests (448 live): small keeps the ring small
W, H = 320, 240


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_video(tmp_path_factory.mktemp("zones") / "testsrc2_320x240.mp4", seconds=2, size=(W, H))


@pytest.fixture(scope="module")
def decoded(clip: Path) -> list[np.ndarray]:
    """Every frame of the clip, BGR, as the runtime's decoder (cv2's FFmpeg backend) gives them."""
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 60
    return frames


def _zones(*zones: dict[str, Any]) -> list[ZoneConfig]:
    return CameraConfig(name="f", url="x.mp4", zones=list(zones)).zones


def _run_source(clip: Path, zones: list[dict[str, Any]]) -> tuple[list[SegmentJob], list[StatusChange],
                                                                   CameraCounters]:
    jobs: list[SegmentJob] = []
    statuses: list[StatusChange] = []
    counters = CameraCounters()
    cam = CameraConfig(name="f", url=str(clip), rate="fast", zones=zones)
    seg = Segmenter("f", ring=FrameRing(8, 8, size=SIZE), frames_per_segment=8, emit=jobs.append,
                    zones=CameraZones("f", cam.zones) if cam.zones else None)
    src = VideoSource(cam, segmenter=seg, counters=counters, on_status=statuses.append, reconnect=ReconnectConfig())
    done = threading.Event()
    src.on_exit = done.set
    src.start()
    assert done.wait(60)
    return jobs, statuses, counters


# -- config ----------------------------------------------------------------------------------------------

def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], zones: list[dict[str, Any]],
           url: str = "x.mp4") -> tuple[int, str]:
    cfg = tmp_path / "cams.yaml"
    cfg.write_text(json.dumps({"cameras": [{"name": "dock", "url": url, "zones": zones}],
                               "metrics": {"enabled": False}}))
    code = cli_main(["check", "-c", str(cfg)])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(("zone", "message"), [
    ({"name": "door", "points": [[0.1, 0.1], [0.5, 0.5]]}, "a polygon needs at least 3 points, got 2"),
    ({"name": "door", "points": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}, "the polygon has zero area"),
    ({"name": "door", "points": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]},
     "edges 0 and 2 cross or touch (the polygon must not intersect itself)"),
    ({"name": "door", "points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.5], [0.35, 0.1], [0.1, 0.5]]},
     "edges 0 and 2 cross or touch"),  # a corner touching an edge
    ({"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.1, 0.1], [0.3, 0.4]]}, "a point is repeated"),
    ({"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.3, 0.1], [0.2, 0.4], [0.1, 0.4]]},
     "edges 0 and 1 fold back onto each other at point 1"),
    ({"name": "door", "points": [[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]},
     "point 1 [1.2, 0.1] is outside 0..1 (relative coordinates; set units: px for pixels)"),
    ({"name": "door", "units": "px", "points": [[10, 10], [-5, 10], [50, 50]]},
     "point 1 [-5, 10] is outside the frame"),
])
def test_bad_zones_are_one_line_naming_camera_and_zone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], zone: dict[str, Any], message: str) -> None:
    code, err = _check(tmp_path, capsys, [{"name": "yard", "points": [[0, 0], [1, 0], [1, 1]]}, zone])
    assert code == 2 and "\n" not in err, err
    assert err.startswith("config error:") and f"camera 'dock', zone 'door': {message}" in err, err


def test_zone_names_are_unique_and_frameless_cameras_take_none(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    tri = {"name": "a", "points": [[0, 0], [1, 0], [1, 1]]}
    code, err = _check(tmp_path, capsys, [tri, tri])
    assert code == 2 and "camera 'dock', zone 'a': the name is used twice" in err and "\n" not in err, err
    code, err = _check(tmp_path, capsys, [tri], url="frameless://30?fps=30")
    assert code == 2 and "camera 'dock': zones need frames" in err, err
    cfg = config_from_dict({"cameras": [{"name": "dock", "url": "x.mp4", "zones": [tri]}]})
    assert cfg.cameras[0].zones[0].units == "relative" and not cfg.cameras[0].zones[0].mask_outside
    # Concave shapes, corners on the frame's edge and three corners on one line are fine.
    assert len(_zones({"name": "L", "points": [[0, 0], [0.5, 0], [0.5, 0.5], [1, 0.5], [1, 1], [0, 1]]},
                      {"name": "flat", "points": [[0, 0], [0.5, 0], [1, 0], [1, 1]]})) == 2


# -- the pixel rule --------------------------------------------------------------------------------------

def test_a_zone_covers_the_pixels_whose_centres_lie_inside_it() -> None:
    rect = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], dtype=np.float64)
    inside = polygon_mask(rect, (0, 0, 30, 30))
    expected = np.zeros((30, 30), bool)
    expected[10:20, 10:20] = True  # edges half-open: 10..20 is pixels 10 to 19
    assert np.array_equal(inside, expected)
    layout = resolve_zones("c", _zones({"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}), W, H)
    assert layout.box == (0, 0, W, H) and layout.keep is None
    # An arbitrary polygon against an independent rule (cv2.pointPolygonTest on each pixel centre, off edges).
    poly = np.array([[3.2, 40.7], [61.0, 5.5], [44.4, 47.9], [30.1, 20.3]])
    box = (0, 0, 64, 48)
    got = polygon_mask(poly, box)
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    checked = 0
    for y in range(48):
        for x in range(64):
            side = cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), measureDist=True)
            if abs(side) > 1e-3:
                assert got[y, x] == (side > 0), (x, y)
                checked += 1
    assert checked > 3000 and 200 < got.sum() < 3000


# -- crops and masks of real frames ----------------------------------------------------------------------

def test_the_model_sees_the_zones_box_of_each_sampled_frame_and_the_bookkeeping_is_unchanged(
        clip: Path, decoded: list[np.ndarray]) -> None:
    zones = [{"name": "door", "units": "px", "points": [[40, 30], [120, 30], [120, 90], [40, 90]]},
             {"name": "lane", "points": [[0.5, 0.5], [0.75, 0.5], [0.75, 1.0], [0.5, 1.0]]}]
    jobs, statuses, _ = _run_source(clip, zones)
    plain, _, _ = _run_source(clip, [])
    assert [s.status for s in statuses] == [CameraStatus.CONNECTING, CameraStatus.ONLINE, CameraStatus.ENDED]
    # Frame bookkeeping is exact: the same segments, frame counts and stream clocks as without zones.
    assert [(j.index, j.n_frames, j.clock) for j in jobs] == [(j.index, j.n_frames, j.clock) for j in plain]
    assert len(jobs) == 2
    for job in jobs:
        assert job.frames is not None and job.frames.shape == (8, SIZE, SIZE, 3)  # still one square per frame
        for k, pos in enumerate(sample_indices(0, 30, 8)):
            frame = decoded[job.index * 30 + pos]
            # Union box: x 40..240, y 30..240 (door: pixels 40-119 x 30-89; lane: 160-239 x 120-239).
            expected = prepare_frame(frame[30:240, 40:240], SIZE)
            assert np.array_equal(job.frames[k], expected), (job.index, k)
            assert not np.array_equal(job.frames[k], prepare_frame(frame, SIZE))


def test_masking_zeroes_exactly_the_outside_of_the_masked_zones(decoded: list[np.ndarray]) -> None:
    frame = decoded[17]
    tri = {"name": "tri", "units": "px", "points": [[100, 20], [300, 60], [180, 200]], "mask_outside": True}
    box_zone = {"name": "box", "units": "px", "points": [[20, 150], [80, 150], [80, 230], [20, 230]]}
    zones = CameraZones("f", _zones(tri, box_zone))
    out = zones.crop(frame)
    layout = zones.layout
    assert layout is not None and layout.box == (20, 20, 300, 230)
    crop = frame[20:230, 20:300]
    kept = np.zeros(crop.shape[:2], bool)
    kept[130:210, 0:60] = True  # the unmasked zone keeps its whole box
    kept |= polygon_mask(layout.zones[0].polygon, layout.box)
    assert np.array_equal(out[kept], crop[kept])
    assert not out[~kept].any()  # every other pixel is 0
    assert crop[~kept].any()  # ... and was not already black
    again = zones.crop(decoded[18])  # the buffer is reused, the mask is not recomputed
    assert again is out and np.array_equal(out[kept], decoded[18][20:230, 20:300][kept])
    assert not again[~kept].any()


def test_a_new_frame_size_resolves_the_zones_again() -> None:
    zones = CameraZones("f", _zones({"name": "half", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}))
    assert zones.crop(np.zeros((48, 64, 3), np.uint8)).shape == (48, 32, 3)
    assert zones.crop(np.zeros((100, 200, 3), np.uint8)).shape == (100, 100, 3)
    assert zones.layout is not None and zones.layout.box == (0, 0, 100, 100)


def test_a_pixel_zone_past_the_frame_fails_that_camera_with_its_reason(clip: Path) -> None:
    zones = [{"name": "door", "units": "px", "points": [[10, 10], [400, 10], [200, 200]]}]
    jobs, statuses, counters = _run_source(clip, zones)
    assert jobs == [] and counters.source_restarts == 0  # stopped for good, not restarted as a crash
    last = statuses[-1]
    assert last.status is CameraStatus.OFFLINE
    assert last.reason == ("config error: camera 'f', zone 'door': point 1 [400, 10] is outside the 320x240 frame "
                           "(units: px)")
    with pytest.raises(ZoneError, match="zone 'door'"):
        resolve_zones("f", _zones(*zones), W, H)
    # `check` reads one frame of each camera: it says so before run does.
    found = probes.camera(0, CameraConfig(name="f", url=str(clip), zones=zones), timeout_s=10)
    assert found.level is probes.Level.ERROR and found.item == "cameras.0.zones"
    assert found.message == "camera 'f', zone 'door': point 1 [400, 10] is outside the 320x240 frame (units: px)"
    fine = probes.camera(0, CameraConfig(name="f", url=str(clip), zones=[{**zones[0], "points": [[10, 10], [320, 10],
                                                                                                 [200, 200]]}]),
                         timeout_s=10)
    assert fine.level is probes.Level.OK and "one 320x240 frame read" in fine.message


# -- the snapshot and the API ----------------------------------------------------------------------------

def _jpeg_pixels(jpeg: bytes | None) -> np.ndarray:
    assert jpeg is not None
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    return pixels


def test_the_snapshot_jpeg_draws_the_zones_outlines(decoded: list[np.ndarray]) -> None:
    frame = decoded[5]
    layout = resolve_zones("f", _zones({"name": "door", "units": "px",
                                        "points": [[40, 30], [200, 30], [200, 150], [40, 150]]}), W, H)
    plain, drawn = _jpeg_pixels(encode_jpeg(frame, 90)), _jpeg_pixels(encode_jpeg(frame, 90, zones=layout))
    assert drawn.shape == frame.shape
    diff = np.abs(drawn.astype(int) - plain.astype(int)).sum(axis=2)
    # Amber lines where the edges are: along the left edge (x = 40) and the bottom edge (y = 150), every
    # row / column of a 6 px band across the edge holds an amber pixel (BGR 0, 215, 255, give or take JPEG) ...
    amber = np.abs(drawn.astype(int) - np.array([0, 215, 255])).sum(axis=2) < 90
    assert amber[100:140, 37:43].any(axis=1).all() and amber[147:153, 60:190].any(axis=0).all()
    assert not (np.abs(plain.astype(int) - np.array([0, 215, 255])).sum(axis=2) < 90)[100:140, 37:43].any(axis=1).all()
    # ... and away from the outline and its label the frame is as it was (JPEG noise only).
    assert diff[:25, :].mean() < 8 and diff[160:, :].mean() < 8 and diff[60:140, 60:180].mean() < 8
    # A frame of another size than the layout's (a squashed model input) is encoded as it is.
    assert encode_jpeg(frame[:100, :100], 90, zones=layout) == encode_jpeg(frame[:100, :100], 90)
    assert frame[100:140, 39:41].std() > 0  # the frame itself was not drawn on


def test_api_cameras_shows_the_zones_and_their_pixel_boxes(tmp_path: Path) -> None:
    zones = [{"name": "door", "points": [[0.25, 0.25], [0.5, 0.25], [0.5, 0.5]], "mask_outside": True}]
    cfg = config_from_dict({"cameras": [{"name": "dock", "url": str(tmp_path / "x.mp4"), "zones": zones}],
                            "metrics": {"enabled": False}})

    async def build() -> Any:
        return build_camera(cfg, cfg.cameras[0], batcher=Batcher(max_batch=2, max_wait_s=0.1, max_pending_per_camera=2,
                                                                max_pending_total=4, on_drop=lambda job, why: None),
                            loop=asyncio.get_running_loop(), run_id="r", encoder=None, text_encoder=None,
                            support=None, source_factory=None, on_status=lambda cam, change: None)

    cam = asyncio.run(build())
    before = cam.overview()
    assert before["zones"] == [{"name": "door", "units": "relative", "points": [[0.25, 0.25], [0.5, 0.25], [0.5, 0.5]],
                                "mask_outside": True, "box": None}]
    assert before["zone_crop"] is None  # no frame yet: no pixel size
    assert cam.zones is not None and cam.zones.crop(np.zeros((H, W, 3), np.uint8)) is not None
    after = cam.overview()
    assert after["zones"][0]["box"] == [80, 60, 160, 120]
    assert after["zone_crop"] == {"frame": [W, H], "box": [80, 60, 160, 120]}
    assert json.loads(json.dumps(after)) == after
    assert zones_overview([], None) == {"zones": [], "zone_crop": None}


# -- end to end ------------------------------------------------------------------------------------------

@pytest.mark.slow
async def test_a_monitor_crops_one_camera_and_fails_only_the_one_whose_zone_is_past_its_frame(clip: Path) -> None:
    from stream_doubles import ANOMALOUS, ScriptedBackend, stream_config

    from corevad_stream import App, MemorySink

    door = {"name": "door", "units": "px", "points": [[40, 30], [200, 30], [200, 150], [40, 150]]}
    seen: list[tuple[str, tuple[int, ...]]] = []

    def answer(c: Any) -> str:
        seen.append((c.source, tuple(c.frames.shape)))
        return ANOMALOUS

    cfg = stream_config([{"name": "good", "url": str(clip), "rate": "fast", "zones": [door]},
                         {"name": "bad", "url": str(clip), "rate": "fast",
                          "zones": [{**door, "points": [[40, 30], [400, 30], [200, 150]]}]}],
                        refinement={"smooth_length": 1}, alerts={"open_threshold": 0.6, "close_threshold": 0.4,
                                                                 "snapshot": True})
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(answer), sinks=[sink]) as app:
        async def ended() -> None:
            while not (sink.of("snapshot", "good") and app.counters["good"].scored == 2
                       and app.counters["bad"].status.value == "offline"):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(ended(), 60)
        overview = {c["name"]: c for c in app.camera_overview()}
    assert seen and set(seen) == {("good", (8, 32, 32, 3))}  # only good reached the model, one square each
    assert app.counters["bad"].reason == ("config error: camera 'bad', zone 'door': point 1 [400, 30] is outside "
                                          "the 320x240 frame (units: px)")
    assert overview["good"]["zone_crop"] == {"frame": [W, H], "box": [40, 30, 200, 150]}
    assert overview["bad"]["zone_crop"] is None
    jpeg = sink.of("snapshot", "good")[-1].payload
    assert isinstance(jpeg, bytes)
    snap = _jpeg_pixels(jpeg)
    assert snap.shape == (H, W, 3)  # the whole frame, not the crop
    amber = np.abs(snap.astype(int) - np.array([0, 215, 255])).sum(axis=2) < 90
    assert amber[100:140, 37:43].any(axis=1).all()  # with the zone's outline
