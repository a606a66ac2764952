"""A pool of OpenAI-compatible replicas: least-loaded spreading, ejection, probe re-admission, retry elsewhere;
the label probability from logprobs. Mechanics against scripted servers (fast, scripted faults); the
deployment case against three real `transformers serve` processes serving the tiny InternVL, one killed
mid-run and restarted."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from corevad.models import Clip, OpenAIOptions, VLMConfig, load_vlm
from corevad.prompt import parse_answer
from corevad_stream.testing import ScriptedModelServer, TransformersServe, wait_until

pytestmark = pytest.mark.services


def _backend(urls: list[str], model: str = "m", **opts: object):  # type: ignore[no-untyped-def]
    options = OpenAIOptions(base_url=urls, model=model, max_side=48, api_key_env=None, **opts)
    return load_vlm(VLMConfig(backend="openai", max_new_tokens=10, openai=options))


def _clips(n: int, start: int = 0) -> list[Clip]:
    rng = np.random.default_rng(start)
    return [Clip("cam", start + i, rng.integers(0, 256, size=(2, 48, 48, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture
def servers() -> Iterator[list[ScriptedModelServer]]:
    with ScriptedModelServer() as a, ScriptedModelServer() as b, ScriptedModelServer() as c:
        yield [a, b, c]


def test_segments_spread_a_failing_replica_is_ejected_retried_elsewhere_and_readmitted(
        servers: list[ScriptedModelServer]) -> None:
    _, b, _ = servers
    backend = _backend([s.base_url for s in servers], concurrency=6, eject_after=2, probe_interval_s=0.2,
                       backoff_s=0.05, max_retries=3, logprobs=False)
    try:
        texts = backend.answer(_clips(30))
        assert all(parse_answer(t).parsed for t in texts)
        assert all(s.requests >= 5 for s in servers), [s.requests for s in servers]  # spread over all three
        b.set("error500")
        before = {s["url"]: s for s in backend.endpoint_stats()}[b.base_url]["requests"]
        texts = backend.answer(_clips(30, 100))  # every segment still answered: retried on a or c
        assert len(texts) == 30 and all(parse_answer(t).parsed for t in texts)
        stats = {s["url"]: s for s in backend.endpoint_stats()}
        # Ejected after 2 failures: few segments sent there (the pool's count; b also sees trial completions).
        assert stats[b.base_url]["healthy"] is False and stats[b.base_url]["requests"] - before <= 3
        assert backend.retries >= 2
        b.set("answer")
        wait_until(lambda: {s["url"]: s for s in backend.endpoint_stats()}[b.base_url]["healthy"], timeout=10,
                   what="probe re-admits the replica")
        before = b.requests
        backend.answer(_clips(30, 200))
        assert b.requests - before >= 5  # back in the rotation
    finally:
        backend.close()


def test_a_replica_that_is_gone_is_skipped_and_a_segment_fails_only_when_all_fail(
        servers: list[ScriptedModelServer]) -> None:
    from corevad.models.openai_backend import OpenAIError

    a, b, c = servers
    urls = [s.base_url for s in servers]
    b.__exit__(None, None, None)  # connection refused from now on
    backend = _backend(urls, concurrency=3, eject_after=1, probe_interval_s=60, backoff_s=0.01, max_retries=2,
                       logprobs=False)
    try:
        assert len(backend.answer(_clips(12))) == 12
        for s in (a, c):
            s.set("error500")
        with pytest.raises(OpenAIError, match="after 3 attempts") as info:
            backend.answer(_clips(1, 50))
        assert info.value.kind in ("server_error", "connection")
    finally:
        backend.close()


def test_p_anomalous_from_logprobs_and_absent_without_them(servers: list[ScriptedModelServer]) -> None:
    a, b, _ = servers
    a.answer = lambda body: "Anomalous scenes.\nA man climbs the fence."
    a.first_token_logprobs = lambda body: [("Anomalous", math.log(0.7)), ("Normal", math.log(0.2)),
                                           ("The", math.log(0.05))]
    one = _backend([a.base_url], top_logprobs=3)
    none = _backend([b.base_url])  # b gives no logprobs although asked
    try:
        [scored] = one.answer_scored(_clips(1))
        [plain] = none.answer_scored(_clips(1))
    finally:
        one.close()
        none.close()
    assert scored.text.startswith("Anomalous") and scored.p_anomalous == pytest.approx(0.7 / 0.9)
    assert plain.p_anomalous is None  # absent, not 0


@pytest.mark.slow
def test_three_transformers_serve_replicas_one_killed_mid_run_and_restarted(tiny_internvl_dir: Path,
                                                                          tmp_path: Path) -> None:
    replicas = [TransformersServe(tmp_path / f"r{i}", tiny_internvl_dir) for i in range(3)]
    starters = [threading.Thread(target=r.start, kwargs={"timeout": 180}) for r in replicas]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    backend = _backend([r.url for r in replicas], model=str(tiny_internvl_dir), concurrency=6, eject_after=1,
                       probe_interval_s=0.5, backoff_s=0.1, max_retries=4, timeout_s=60)
    try:
        assert all(r.running for r in replicas), [r.log_text()[-500:] for r in replicas]
        first = backend.answer_scored(_clips(6))
        assert all(a.text for a in first) and all(a.p_anomalous is None for a in first)  # no logprobs there
        victim = replicas[1]
        result: dict[str, object] = {}
        run = threading.Thread(target=lambda: result.update(answers=backend.answer_scored(_clips(36, 100))))
        run.start()
        wait_until(lambda: {s["url"]: s for s in backend.endpoint_stats()}[victim.url]["in_flight"] > 0,
                   timeout=30, what="a request in flight on the victim")
        victim.kill()  # mid-run: its in-flight segments must be answered by the others
        run.join(300)
        answers = result["answers"]
        assert isinstance(answers, list) and len(answers) == 36 and all(a.text for a in answers)
        stats = {s["url"]: s for s in backend.endpoint_stats()}
        assert stats[victim.url]["healthy"] is False and stats[victim.url]["errors"] >= 1
        victim.start(timeout=180)
        wait_until(lambda: {s["url"]: s for s in backend.endpoint_stats()}[victim.url]["healthy"], timeout=30,
                   what="the restarted replica re-admitted")
        sent = {s["url"]: s for s in backend.endpoint_stats()}[victim.url]["requests"]
        assert all(a.text for a in backend.answer_scored(_clips(12, 200)))
        assert {s["url"]: s for s in backend.endpoint_stats()}[victim.url]["requests"] > sent
    finally:
        backend.close()
        for r in replicas:
            r.kill()
