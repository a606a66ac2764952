"""Two-phase delivery (describe on_demand): the model stage hands every segment's verdict to scoring before the
batch's description pass runs, then each description as an update. On the tiny in-process InternVL (KV-cache
continuation) and on the scripted OpenAI-compatible server (describe_via two_requests)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corevad.models import VLMConfig, load_vlm
from corevad.models.base import Clip
from corevad.models.openai_backend import VERDICT_TOKENS, encode_jpeg_data_url
from corevad.models.transformers_backend import scripted_first_tokens
from corevad.prompt import VERDICT_LINES, parse_answer
from corevad_stream.batcher import Batcher
from corevad_stream.entities import DescriptionUpdate, SegmentJob, SegmentResult
from corevad_stream.health import ModelHealth
from corevad_stream.model_stage import ModelStage
from corevad_stream.testing.model_server import ScriptedModelServer
from corevad_stream.worker import ModelWorker

LABELS = [1, 0, 0, 1, 0, 1]  # the verdict each segment is made to begin with


def _frames(n: int, seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(4, 40, 40, 3), dtype=np.uint8) for _ in range(n)]


def _jobs(frames: list[np.ndarray], cameras: str = "ab") -> list[SegmentJob]:
    """Segment i on camera cameras[i % len(cameras)] (one camera: the batch's rows are the segments in order,
    which a first-token script by row needs)."""
    return [SegmentJob(camera=cameras[i % len(cameras)], index=i, start=float(i), end=i + 1.0, clock=i + 1.0,
                       n_frames=30, frames=f) for i, f in enumerate(frames)]


class _Stage:
    """A real Batcher, ModelWorker and ModelStage; every delivery and `events` (shared with the backend side)
    recorded in the order they happened."""

    def __init__(self, backend: Any, events: list[tuple[str, Any]], lock: threading.Lock) -> None:
        self.events, self.lock = events, lock
        self.drops: list[tuple[str, int, str]] = []
        self.batcher = Batcher(max_batch=len(LABELS) + 2, max_wait_s=0.0, max_pending_per_camera=20,
                               max_pending_total=100,
                               on_drop=lambda j, why: self.drops.append((j.camera, j.index, why)))
        self.worker = ModelWorker(backend)
        self.stage = ModelStage(runner=self.worker, batches=self.batcher, health=ModelHealth(down_after_s=30),
                                overlap=True, deliver=self._deliver, publish=lambda m: None,
                                on_drop=lambda j, why: self.drops.append((j.camera, j.index, why)))

    async def _deliver(self, item: SegmentResult | SegmentJob | DescriptionUpdate) -> None:
        with self.lock:
            if isinstance(item, SegmentResult):
                self.events.append(("result", item))
            elif isinstance(item, DescriptionUpdate):
                self.events.append(("description", item))
            else:
                self.events.append(("end", item.camera))

    async def run(self, jobs: list[SegmentJob]) -> None:
        for job in jobs:
            self.batcher.offer(job)
        for camera in sorted({j.camera for j in jobs}):
            self.batcher.end_of_stream(camera)
        await self.batcher.close()
        await asyncio.wait_for(self.stage.run(), 120)
        self.stage.close()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def _check_order(events: list[tuple[str, Any]], second_phase: str, cameras: int) -> None:
    """Every verdict before the description pass starts, every description after it, the end markers last."""
    kinds = [k for k, _ in events]
    start = kinds.index(second_phase)
    assert kinds[:start] == ["result"] * len(LABELS), kinds
    assert set(kinds[start + 1:]) <= {second_phase, "description", "end"} and "description" in kinds, kinds
    assert kinds[-cameras:] == ["end"] * cameras and "end" not in kinds[:-cameras], kinds


def _by_index(events: list[tuple[str, Any]], kind: str) -> list[Any]:
    items = [x for k, x in events if k == kind]
    return sorted(items, key=lambda x: x.job.index if isinstance(x, SegmentResult) else x.index)


@pytest.fixture
def tiny_two_phase(tiny_internvl_dir: Path) -> Any:
    def make(describe: str) -> Any:
        backend = load_vlm(VLMConfig(model=str(tiny_internvl_dir), max_new_tokens=10, batch_size=len(LABELS),
                                     device="cpu", describe=describe, describe_above=1.0))
        clips = [Clip("x", i, f) for i, f in enumerate(_frames(len(LABELS)))]
        prompt_len = backend.prepare(clips)[0][1]["input_ids"].shape[1]
        backend.generate_kwargs["logits_processor"] = scripted_first_tokens(backend, LABELS, prompt_len=prompt_len)
        return backend, clips
    return make


async def test_in_process_verdicts_go_out_before_the_description_pass(tiny_two_phase: Any) -> None:
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    backend, clips = tiny_two_phase("on_demand")
    continue_rows = backend._continue

    def recorded(inputs, first, rows):  # type: ignore[no-untyped-def]
        with lock:
            events.append(("second phase", list(rows)))
        return continue_rows(inputs, first, rows)

    backend._continue = recorded
    rig = _Stage(backend, events, lock)
    await rig.run(_jobs(_frames(len(LABELS)), "a"))
    _check_order(events, "second phase", 1)
    assert events[len(LABELS)] == ("second phase", [i for i, x in enumerate(LABELS) if x == 1])
    results = {r.job.index: r for k, r in events if k == "result"}
    # Every verdict is out, each anomalous one marked "description to come" and scored by its verdict line.
    for i, label in enumerate(LABELS):
        r = results[i]
        assert r.answered and r.verdict.label == label and r.description_pending == (label == 1)
        assert r.verdict.text == VERDICT_LINES[label] and r.p_anomalous is not None
    # The descriptions that follow are the one-pass answers' descriptions, token for token.
    one_pass = tiny_two_phase("all")[0].answer_scored(clips)
    updates = [u for k, u in events if k == "description"]
    assert [(u.camera, u.index) for u in updates] == [("a", i) for i, x in enumerate(LABELS) if x == 1]
    for u in updates:
        assert u.error is None and u.description == parse_answer(one_pass[u.index].text).description
    assert rig.worker.descriptions == 3 and rig.worker.descriptions_failed == 0
    assert rig.stage.stats()["descriptions"] == 3
    # describe_delivery one_pass: the same backend answers a batch whole (the scores wait for its descriptions).
    backend.config = backend.config.model_copy(update={"describe_delivery": "one_pass"})
    assert rig.worker.two_phase is False and "descriptions" not in rig.stage.stats()


async def test_a_failed_description_pass_keeps_every_verdict_and_marks_the_descriptions_missing(
        tiny_two_phase: Any) -> None:
    events: list[tuple[str, Any]] = []
    backend, _ = tiny_two_phase("on_demand")

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory")

    backend._continue = broken
    rig = _Stage(backend, events, threading.Lock())
    await rig.run(_jobs(_frames(len(LABELS)), "a"))
    results = [r for k, r in events if k == "result"]
    updates = [u for k, u in events if k == "description"]
    assert [r.verdict.label for r in results] == LABELS and all(r.answered for r in results)
    assert len(updates) == 3 and all(u.description is None and "out of memory" in (u.error or "") for u in updates)
    assert rig.drops == [] and rig.worker.descriptions_failed == 3
    assert rig.stage.stats()["descriptions_failed"] == 3


async def test_two_requests_verdicts_go_out_before_the_full_requests_are_sent() -> None:
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    frames = [np.full((2, 16, 16, 3), 255 if label else 0, np.uint8) for label in LABELS]
    anomalous_url = encode_jpeg_data_url(frames[0][0], quality=90, max_side=448, square=True)

    def answer(body: dict[str, Any]) -> str:
        parts = body["messages"][0]["content"]
        anomalous = any(p.get("image_url", {}).get("url") == anomalous_url for p in parts)
        if body["max_tokens"] == VERDICT_TOKENS:
            return "Anomalous scenes." if anomalous else "Normal scenes."
        with lock:
            events.append(("full request", anomalous))
        return "Anomalous scenes.\nA man kicks the door in." if anomalous else "Normal scenes.\nA quiet street."

    with ScriptedModelServer(answer) as srv:
        srv.first_token_logprobs = lambda body: [("Normal", -0.1), ("Anomalous", -2.5)]
        backend = load_vlm(VLMConfig(backend="openai", describe="on_demand", describe_above=0.5, openai={
            "base_url": srv.base_url, "describe_via": "two_requests", "max_retries": 0, "concurrency": 2}))
        try:
            rig = _Stage(backend, events, lock)
            await rig.run(_jobs(frames))
        finally:
            backend.close()
    _check_order(events, "full request", 2)
    assert [k for k, _ in events].count("full request") == 3
    results = _by_index(events, "result")
    assert [r.verdict.label for r in results] == LABELS
    assert [r.description_pending for r in results] == [bool(x) for x in LABELS]
    updates = [u for k, u in events if k == "description"]
    assert [u.description for u in updates] == ["A man kicks the door in."] * 3


async def test_two_requests_full_request_failures_cost_only_the_descriptions() -> None:
    events: list[tuple[str, Any]] = []
    frames = [np.full((2, 16, 16, 3), 255 if label else 0, np.uint8) for label in LABELS]
    anomalous_url = encode_jpeg_data_url(frames[0][0], quality=90, max_side=448, square=True)
    srv_ref: list[ScriptedModelServer] = []

    def answer(body: dict[str, Any]) -> str:
        anomalous = any(p.get("image_url", {}).get("url") == anomalous_url for p in body["messages"][0]["content"])
        if body["max_tokens"] != VERDICT_TOKENS:
            srv_ref[0].set("error500")  # the full requests fail from here on (this one still answers)
            return "Anomalous scenes.\nA man kicks the door in."
        return "Anomalous scenes." if anomalous else "Normal scenes."

    with ScriptedModelServer(answer) as srv:
        srv_ref.append(srv)
        backend = load_vlm(VLMConfig(backend="openai", describe="on_demand", openai={
            "base_url": srv.base_url, "describe_via": "two_requests", "max_retries": 0, "concurrency": 1}))
        try:
            rig = _Stage(backend, events, threading.Lock())
            await rig.run(_jobs(frames))
        finally:
            backend.close()
    results, updates = _by_index(events, "result"), [u for k, u in events if k == "description"]
    assert [r.verdict.label for r in results] == LABELS and all(r.answered for r in results)
    assert sorted(u.description is None for u in updates) == [False, True, True]
    assert all("500" in (u.error or "") for u in updates[1:]) and rig.drops == []


def test_two_requests_full_request_carries_the_cameras_scene_context() -> None:
    """The second request is the first one's prompt (the scene context included): otherwise the description
    ignores what is normal at the camera, and vLLM's prefix cache cannot reuse the verdict request."""
    context = "A loading dock: forklifts are normal at any hour."
    prompts: list[tuple[int, str]] = []
    lock = threading.Lock()

    def answer(body: dict[str, Any]) -> str:
        text = " ".join(p.get("text", "") for p in body["messages"][0]["content"] if p.get("type") == "text")
        with lock:
            prompts.append((body["max_tokens"], text))
        if body["max_tokens"] == VERDICT_TOKENS:
            return "Anomalous scenes."
        return "Anomalous scenes.\nA man climbs the dock's fence."

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with ScriptedModelServer(answer) as srv:
        backend = load_vlm(VLMConfig(backend="openai", describe="on_demand", openai={
            "base_url": srv.base_url, "describe_via": "two_requests", "max_retries": 0}))
        try:
            vp = backend.verdicts([Clip("dock", 0, frames, context=context)])
            assert vp.pending == [0]
            [described] = vp.describe()
        finally:
            backend.close()
    assert "climbs the dock's fence" in described.text
    assert len(prompts) == 2 and prompts[0][0] == VERDICT_TOKENS and prompts[1][0] != VERDICT_TOKENS
    assert all(context in text for _, text in prompts)
