"""Model faults through the real openai backend, against a scriptable OpenAI-compatible server (issue 8).

A model that did not answer is never published as a model that said "Normal": no score 0, a model state
that goes down and comes back, open alerts that wait, and a shutdown that finishes during a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_doubles import stream_config

from corevad.models import Clip, OpenAIOptions, VLMConfig, load_vlm
from corevad.models.openai_backend import OpenAIError, retry_after_s
from corevad_stream import App, MemorySink
from corevad_stream.config import StreamConfig
from corevad_stream.testing import ScriptedModelServer

ANOMALOUS = "Anomalous scenes.\nA man smashes the shop window."
NORMAL = "Normal scenes.\nPeople walk past the shop."


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(lambda body: ANOMALOUS) as srv:
        yield srv


def _openai(srv: ScriptedModelServer, **opts: Any) -> dict[str, Any]:
    options = {"base_url": srv.base_url, "model": "m", "api_key_env": None, "max_side": 32, "timeout_s": 30,
               "max_retries": 0, "backoff_s": 0.05, "max_backoff_s": 0.5, **opts}
    return {"tiny": False, "clip": None, "vlm": {"backend": "openai", "max_new_tokens": 16, "openai": options}}


def _clip() -> Clip:
    return Clip("cam", 3, np.zeros((2, 16, 16, 3), np.uint8))


def test_retry_after_is_capped_and_close_interrupts_the_wait(model_server: ScriptedModelServer) -> None:
    model_server.set("rate_limit")  # Retry-After: 3600
    backend = load_vlm(VLMConfig(backend="openai", openai=OpenAIOptions(**_openai(
        model_server, max_retries=2, max_backoff_s=0.3)["vlm"]["openai"])))
    try:
        t0 = time.monotonic()
        with pytest.raises(OpenAIError, match="HTTP 429") as info:
            backend.answer([_clip()])
        assert time.monotonic() - t0 < 3.0  # two waits of at most 0.3 s, not two hours
        assert info.value.kind == "rate_limited" and model_server.requests == 3
    finally:
        backend.close()
    slow = load_vlm(VLMConfig(backend="openai", openai=OpenAIOptions(**_openai(
        model_server, max_retries=3, backoff_s=60, max_backoff_s=60)["vlm"]["openai"])))
    box: dict[str, BaseException] = {}

    def call() -> None:
        try:
            slow.answer([_clip()])
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["exc"] = exc

    import threading

    t = threading.Thread(target=call, daemon=True)
    t.start()
    time.sleep(0.5)  # in its 60 s wait now
    t0 = time.monotonic()
    slow.close()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 2.0
    assert isinstance(box.get("exc"), OpenAIError) and box["exc"].kind == "closed"  # type: ignore[attr-defined]


def test_retry_after_header_forms() -> None:
    assert retry_after_s("3") == 3.0 and retry_after_s(" 1.5 ") == 1.5
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("-5") == 0.0


async def _wait(sink: MemorySink, pred: Callable[[list[Any]], bool], timeout: float, what: str) -> None:
    try:
        await sink.wait_for(pred, timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def _shop(srv: ScriptedModelServer, video_factory: Callable[..., Path], *, openai: dict[str, Any] | None = None,
          alerts: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None) -> StreamConfig:
    """A looping 2 s clip at 4 segments/s of 2 frames, answered through the openai backend by `srv`."""
    video = video_factory("shop.mp4", seconds=2, size=(64, 64), fps=20)
    return stream_config([{"name": "shop", "url": str(video), "rate": "native", "loop": True}],
                         model=_openai(srv, **(openai or {})), refinement={"smooth_length": 2}, alerts=alerts or {},
                         runtime={"segment_seconds": 0.25, "frames_per_segment": 2, "model_down_after_s": 1.0,
                                  **(runtime or {})})


def _models(sink: MemorySink, camera: str | None = None) -> list[str]:
    return [m.payload["state"] for m in sink.messages if m.kind == "model" and m.camera == camera]


@pytest.mark.slow
async def test_outage_is_published_as_unavailable_never_as_normal_and_the_alert_waits(
        model_server: ScriptedModelServer, video_factory: Callable[..., Path]) -> None:
    cfg = _shop(model_server, video_factory, alerts={"close_after_s": 1.0, "cooldown_s": 0, "max_unscored_s": 60})
    sink = MemorySink()
    async with App(cfg, sinks=[sink]):
        await _wait(sink, lambda ms: any(m.kind == "events" for m in ms), 30, "the alert to open")
        await _wait(sink, lambda ms: "ok" in _models(sink), 5, "model ok")
        n_before = len(sink.messages)
        t_outage = time.monotonic()
        model_server.set("error500")
        await _wait(sink, lambda ms: "down" in _models(sink), 10, "model down")
        t_down = time.monotonic() - t_outage
        await _wait(sink, lambda ms: "down" in _models(sink, "shop"), 5, "camera model down")
        await asyncio.sleep(2.0)  # longer than close_after_s: a 'normal' reading would end the alert
        outage = sink.messages[n_before:]
        n_recovery = len(sink.messages)
        model_server.set("answer")
        await _wait(sink, lambda ms: _models(sink)[-1:] == ["ok"], 10, "model ok again")
        await _wait(sink, lambda ms: sum(m.kind == "score" and m.payload["available"]
                                         for m in ms[n_recovery:]) >= 3, 10, "scores after recovery")
        model_server.answer = lambda body: NORMAL  # scoring resumes where the answers resume
        await _wait(sink, lambda ms: any(m.kind == "events" and m.payload["type"] == "end" for m in ms), 20,
                    "the alert to end on normal answers")

    scores = [m.payload for m in outage if m.kind == "score"]
    assert scores, "segments kept coming during the outage"
    unavailable = [s for s in scores if not s["available"]]
    assert len(unavailable) >= 4 and all(s["score"] is None and s["error"] == "server_error" for s in unavailable)
    assert not any(s["available"] and s["score"] == 0.0 for s in scores[len(scores) // 2:])
    assert not any(m.kind == "events" and m.payload["type"] == "end" for m in outage)  # the alert waited
    assert [m.payload for m in outage if m.kind == "state"] == []  # still anomalous, never "normal"
    assert t_down < 1.0 + 3.0  # down after model_down_after_s (+ one batch, + slack for a noisy machine)
    events = [m.payload for m in sink.of("events")]
    assert events[0]["type"] == "new" and events[-1]["type"] == "end"
    assert events[-1]["after"]["end_reason"] == "score below close threshold"
    assert len({e["after"]["id"] for e in events}) == 1
    down = next(m.payload for m in sink.messages if m.kind == "model" and m.payload["state"] == "down")
    assert down["reason"].startswith("server_error") and down["errors"]["server_error"] >= 1


@pytest.mark.slow
async def test_an_alert_that_waits_too_long_for_answers_ends_with_a_reason(
        model_server: ScriptedModelServer, video_factory: Callable[..., Path]) -> None:
    cfg = _shop(model_server, video_factory, alerts={"close_after_s": 60, "max_unscored_s": 1.5})
    sink = MemorySink()
    async with App(cfg, sinks=[sink]):
        await _wait(sink, lambda ms: any(m.kind == "events" for m in ms), 30, "the alert to open")
        model_server.set("empty")  # answers, but empty ones: not an answer
        await _wait(sink, lambda ms: any(m.kind == "events" and m.payload["type"] == "end" for m in ms), 10,
                    "the alert to end")
        unavailable = [m.payload for m in sink.of("score", "shop") if not m.payload["available"]]
    end = [m.payload for m in sink.of("events")][-1]
    assert end["after"]["end_reason"] == "model unavailable"
    assert unavailable and {s["error"] for s in unavailable} == {"empty"}


@pytest.mark.slow
async def test_a_hung_model_goes_down_and_shutdown_finishes_in_time(
        model_server: ScriptedModelServer, video_factory: Callable[..., Path]) -> None:
    cfg = _shop(model_server, video_factory, openai={"timeout_s": 120},
                runtime={"model_down_after_s": 1.5, "shutdown_timeout_s": 1.0})
    sink = MemorySink()
    app = App(cfg, sinks=[sink])
    async with app:
        await _wait(sink, lambda ms: "ok" in _models(sink), 30, "model ok")
        model_server.set("hang")
        await _wait(sink, lambda ms: "down" in _models(sink), 10, "model down (watchdog)")
        assert app.counters["shop"].queue_lag_s >= 1.0 or app.cameras["shop"].lag() >= 1.0  # honest lag
        t0 = time.monotonic()
    shutdown_s = time.monotonic() - t0
    assert shutdown_s < 1.0 + 1.5, shutdown_s  # one shutdown_timeout_s deadline, plus sink flushing and slack
    down = [m.payload for m in sink.messages if m.kind == "model" and m.payload["state"] == "down"]
    assert "no answer for" in down[0]["reason"]
    assert sink.messages[-1].kind == "available" and sink.messages[-1].payload == "offline"


@pytest.mark.parametrize("segment_score", ["label", "p_anomalous"])
async def test_the_label_probability_is_published_and_scores_when_asked(
        model_server: ScriptedModelServer, video_factory: Callable[..., Path], segment_score: str) -> None:
    import math

    model_server.first_token_logprobs = lambda body: [("Anomalous", math.log(0.6)), ("Normal", math.log(0.4))]
    cfg = _shop(model_server, video_factory, openai={"top_logprobs": 2})
    cfg = cfg.model_copy(update={"refinement": cfg.refinement.model_copy(update={
        "segment_score": segment_score, "smooth_length": 1})})
    sink = MemorySink()
    async with App(cfg, sinks=[sink]) as app:
        await _wait(sink, lambda ms: sum(m.kind == "score" for m in ms) >= 4, 30, "four scores")
        [replica] = app.stats()["model"]["endpoints"]  # the pool's view, in <prefix>/stats
    assert replica["url"] == model_server.base_url and replica["healthy"] and replica["requests"] >= 4
    scores = [m.payload for m in sink.messages if m.kind == "score" and m.payload.get("available")]
    assert all(s["p_anomalous"] == pytest.approx(0.6) for s in scores)  # published either way
    assert all(s["raw_label"] == 1 for s in scores)  # the text still says "Anomalous"
    expected = 0.6 if segment_score == "p_anomalous" else 1.0
    assert all(s["score"] == pytest.approx(expected) for s in scores)  # the switch decides what is scored


async def test_a_huge_answer_stays_out_of_the_scores_and_the_cut_is_counted_in_the_stats(
        model_server: ScriptedModelServer, video_factory: Callable[..., Path]) -> None:
    """Issue 18 item 11 through the App: a 50 kB answer is cut at max_answer_chars before it reaches a score
    message, and <prefix>/stats counts the cut."""
    model_server.answer = lambda body: ANOMALOUS + " " + "glass " * 10_000
    cfg = _shop(model_server, video_factory)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={
        "vlm": cfg.model.vlm.model_copy(update={"max_answer_chars": 200})})})
    sink = MemorySink()
    async with App(cfg, sinks=[sink]) as app:
        await _wait(sink, lambda ms: sum(m.kind == "score" for m in ms) >= 3, 30, "three scores")
        model = app.stats()["model"]
    assert model["answers_cut"] >= 3 and model["answers_refused"] == 0
    scores = [m.payload for m in sink.messages if m.kind == "score" and m.payload.get("available")]
    assert scores and all(len(s["description"]) < 200 for s in scores)
    assert all(s["raw_label"] == 1 for s in scores)  # the verdict survives the cut
