"""The openai backend against the scripted server: answers bounded in bytes and characters (issue 18 item 11),
a replica re-admitted only on a real completion and probed less while it flaps (item 15), describe on_demand
over HTTP (a short verdict request, the full request only where needed), and one tile per frame."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from corevad.models import Clip, OpenAIOptions, VLMConfig, load_vlm  # noqa: E402
from corevad.models.openai_backend import VERDICT_TOKENS, OpenAIError  # noqa: E402
from corevad.prompt import parse_answer  # noqa: E402
from corevad_stream.testing import ScriptedModelServer, wait_until

pytestmark = pytest.mark.services


def _backend(urls: list[str], *, describe: str = "all", max_answer_chars: int = 2000, **opts: Any):  # type: ignore[no-untyped-def]
    opts.setdefault("describe_via", "two_requests")
    options = OpenAIOptions(base_url=urls, model="m", max_side=48, api_key_env=None, **opts)
    return load_vlm(VLMConfig(backend="openai", max_new_tokens=10, openai=options, describe=describe,
                              max_answer_chars=max_answer_chars))


def _clips(n: int, start: int = 0, size: tuple[int, int] = (48, 48)) -> list[Clip]:
    rng = np.random.default_rng(start)
    return [Clip("cam", start + i, rng.integers(0, 256, size=(2, *size, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as s:
        yield s


def test_a_huge_answer_is_refused_unread_and_a_long_one_is_cut_and_counted(server: ScriptedModelServer) -> None:
    backend = _backend([server.base_url], max_answer_chars=100, max_response_bytes=1024 * 1024, max_retries=0)
    try:
        server.answer = lambda body: "Anomalous scenes.\n" + "x" * 10_000_000  # 10 MB
        with pytest.raises(OpenAIError) as info:
            backend.answer_scored(_clips(1))
        assert info.value.kind == "too_large" and backend.answers_refused == 1
        server.answer = lambda body: "Anomalous scenes.\n" + "y" * 50_000
        [a] = backend.answer_scored(_clips(1))
        assert a.cut and len(a.text) == 100 and backend.answers_cut == 1
        assert parse_answer(a.text).label == 1
    finally:
        backend.close()


def test_a_replica_whose_completions_fail_stays_out_until_it_answers_and_is_probed_less_while_it_flaps() -> None:
    with ScriptedModelServer() as good, ScriptedModelServer() as bad:
        backend = _backend([good.base_url, bad.base_url], eject_after=1, probe_interval_s=0.1, backoff_s=0.01,
                           max_retries=3, logprobs=False, concurrency=2)
        try:
            bad.set("error500")  # GET /models still answers 200: the old probe re-admitted it here
            assert len(backend.answer(_clips(6))) == 6
            assert not _health(backend, bad)
            probes = bad.requests
            wait_until(lambda: bad.requests >= probes + 3, timeout=30, what="three trial completions")
            assert not _health(backend, bad) and backend.pool.readmissions == 0  # they all failed: still out
            bad.set("answer")
            wait_until(lambda: _health(backend, bad), timeout=30, what="re-admitted on a real answer")
            assert backend.pool.readmissions == 1
            bad.set("error500")  # flaps: ejected again, and its next probe waits twice as long
            backend.answer(_clips(6, 10))
            wait_until(lambda: not _health(backend, bad), timeout=30, what="ejected again")
            delays = {s["url"]: s["probe_delay_s"] for s in backend.endpoint_stats()}
            assert delays[bad.base_url] == pytest.approx(0.2)
        finally:
            backend.close()


def _health(backend: Any, server: ScriptedModelServer) -> bool:
    return bool({s["url"]: s for s in backend.endpoint_stats()}[server.base_url]["healthy"])


def _is_anomalous(body: dict[str, Any]) -> bool:
    """The scripted verdict of a request's segment: a hash of its first image, anomalous for 1 in 3."""
    parts = body["messages"][0]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    return hashlib.sha256(url.encode()).digest()[0] % 3 == 0


def test_describe_on_demand_asks_for_the_verdict_then_the_full_answer_only_where_needed(
        server: ScriptedModelServer) -> None:
    seen: list[int] = []

    def answer(body: dict[str, Any]) -> str:
        seen.append(body["max_tokens"])
        full = ("Anomalous scenes.\nA man breaks a window." if _is_anomalous(body)
                else "Normal scenes.\nPeople walk past the shop.")
        return full.split()[0] if body["max_tokens"] == VERDICT_TOKENS else full

    server.answer = answer
    lazy, full = _backend([server.base_url], describe="on_demand"), _backend([server.base_url])
    try:
        clips = _clips(12)
        one = full.answer_scored(clips)
        seen.clear()
        two = lazy.answer_scored(clips)
    finally:
        lazy.close()
        full.close()
    anomalous = [i for i, a in enumerate(one) if parse_answer(a.text).label == 1]
    assert 0 < len(anomalous) < 12
    assert seen.count(VERDICT_TOKENS) == 12 and seen.count(10) == len(anomalous)  # a full request only where anomalous
    for i, (a, b) in enumerate(zip(one, two, strict=True)):
        if i in anomalous:
            assert b.described and b.text == a.text
        else:
            assert not b.described and b.text == "Normal scenes." and parse_answer(b.text).label == 0


def test_describe_on_demand_keeps_an_anomalous_verdict_when_its_description_fails(
        server: ScriptedModelServer) -> None:
    def answer(body: dict[str, Any]) -> str:
        assert body["max_tokens"] == VERDICT_TOKENS
        server.set("error500")  # the verdict is answered; the description request that follows fails
        return "Anomalous"

    server.answer = answer
    lazy = _backend([server.base_url], describe="on_demand", max_retries=0)
    try:
        [a] = lazy.answer_scored(_clips(1))
    finally:
        lazy.close()
    assert server.by_mode == {"answer": 1, "error500": 1}
    assert a.error is None and parse_answer(a.text).label == 1 and not a.described


def test_describe_on_demand_fails_a_segment_whose_verdict_is_unknown_when_its_description_fails(
        server: ScriptedModelServer) -> None:
    def answer(body: dict[str, Any]) -> str:
        server.set("error500")
        return "The"  # neither label: the verdict needs the full answer

    server.answer = answer
    lazy = _backend([server.base_url], describe="on_demand", max_retries=0)
    try:
        [a] = lazy.answer_scored(_clips(1))
    finally:
        lazy.close()
    assert a.text == "" and a.error and a.error_kind == "server_error"


def test_frames_go_out_as_one_448_tile_whatever_their_shape(server: ScriptedModelServer) -> None:
    from PIL import Image

    sizes: list[tuple[int, int]] = []

    def answer(body: dict[str, Any]) -> str:
        for p in body["messages"][0]["content"]:
            if p["type"] == "image_url":
                raw = base64.b64decode(p["image_url"]["url"].split(",", 1)[1])
                sizes.append(Image.open(io.BytesIO(raw)).size)
        return "Normal scenes.\nA road."

    server.answer = answer
    options = OpenAIOptions(base_url=server.base_url, model="m", api_key_env=None)  # the defaults
    backend = load_vlm(VLMConfig(backend="openai", openai=options))
    try:
        backend.answer(_clips(1, size=(240, 320)))  # a UCF-Crime frame: 320 x 240
    finally:
        backend.close()
    assert sizes == [(448, 448), (448, 448)]
