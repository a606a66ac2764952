"""VLM backend for OpenAI-compatible chat-completions servers (vLLM, LMDeploy, SGLang, transformers serve),
one or a pool of replicas."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import io
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backoff import Backoff, BackoffPolicy
from ..errors import ModelError
from ..prompt import (
    VERDICT_LINES,
    camera_prompt,
    cut_answer,
    label_of_token,
    load_prompt,
    needs_description,
    p_anomalous,
)
from ..threads import DaemonPool
from .base import Answer, Clip, VerdictPass
from .config import VLMConfig

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# A re-admitted replica counts as steady (its probe backoff starts over) after this many answers in a row.
STEADY_AFTER = 10
# describe on_demand's verdict request: a few tokens, not one, because a server's tokenizer may begin "Normal"
# with a piece too short to tell the label ("N"); "Normal scenes." is 3-4 tokens for InternVL2's tokenizer.
VERDICT_TOKENS = 4
# The health probe: one real 1-token completion, text only (a replica whose /models answers while its
# completions fail must stay out).
_PROBE_MESSAGES = [{"role": "user", "content": "Answer Normal or Anomalous."}]
# Splits the rendered prompt where each frame goes, so images sit inline ("Frame1: <img>\nFrame2: ...").
_SLOT = "\x00FRAME\x00"


class OpenAIError(ModelError):
    """The server answered with an error status, or could not be reached after retries."""

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None) -> None:
        if kind is None:
            kind = ("rate_limited" if status == 429 else "server_error" if status is not None and status >= 500
                    else "client_error" if status is not None else "error")
        super().__init__(message, kind=kind)
        self.status = status


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from an HTTP Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


def encode_jpeg_data_url(frame: np.ndarray, *, quality: int = 90, max_side: int | None = None,
                         square: bool = False) -> str:
    """(H, W, 3) uint8 RGB -> "data:image/jpeg;base64,...", downscaled so max(H, W) <= max_side; with square,
    resized to max_side x max_side (the live path's squash: one InternVL tile, where a 320x240 frame would be
    13 tiles on vLLM's InternVL2 processor)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame), mode="RGB")
    if square and max_side is not None:
        if img.size != (max_side, max_side):
            img = img.resize((max_side, max_side), Image.Resampling.BICUBIC)
    elif max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(slots=True)
class Endpoint:
    """One replica and what the pool knows of it."""

    url: str  # server root including /v1
    logprobs: bool  # still asked for logprobs (auto turns this off where the server rejects the field)
    in_flight: int = 0
    failures: int = 0  # in a row
    ejected_at: float | None = None  # monotonic; None while healthy
    next_probe: float = 0.0
    requests: int = 0
    errors: int = 0
    successes: int = 0  # in a row
    flaps: Backoff | None = None  # the probe delay, growing each time the replica is ejected again

    @property
    def healthy(self) -> bool:
        return self.ejected_at is None


class EndpointPool:
    """Replicas behind one backend: each request goes to the least loaded healthy replica (fewest requests in
    flight, then fewest sent); `eject_after` failures in a row take a replica out, and a prober thread sends
    an ejected one a real 1-token completion (`probe(url) -> bool`) and re-admits it when that is answered:
    `GET /models` answers while completions still fail, which made replicas flap. The probe delay starts at
    `probe_interval_s` and doubles each time the replica is ejected again (up to 16 times), so a flapping
    replica is tried less and less; STEADY_AFTER answers in a row start it over.

    Why in the client: vLLM/LMDeploy/SGLang replicas (one per GPU or machine) need no balancer in front,
    and the client knows which segment failed where, so it can retry it on another replica."""

    def __init__(self, urls: Sequence[str], *, eject_after: int, probe_interval_s: float, logprobs: bool,
                 probe: Any) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.endpoints = [Endpoint(u, logprobs) for u in urls]
        self.eject_after = eject_after
        self.probe_interval_s = probe_interval_s
        self._flap_policy = BackoffPolicy(initial_s=probe_interval_s, max_s=16 * probe_interval_s, factor=2.0,
                                          jitter=0.0)
        self.readmissions = 0
        self._probe = probe  # url -> bool (answers 200)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._prober: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self.endpoints)

    def acquire(self, *, exclude: set[str] = frozenset()) -> Endpoint:  # type: ignore[assignment]
        """The replica to send to: healthy and not yet tried for this segment if any; else healthy; else (all
        ejected) the one ejected longest ago, so a segment is still tried rather than failed unsent."""
        with self._lock:
            pick = ([e for e in self.endpoints if e.healthy and e.url not in exclude]
                    or [e for e in self.endpoints if e.healthy])
            if pick:
                ep = min(pick, key=lambda e: (e.in_flight, e.requests))
            else:
                ep = min(self.endpoints, key=lambda e: e.ejected_at or 0.0)
            ep.in_flight += 1
            ep.requests += 1
            return ep

    def release(self, ep: Endpoint, *, ok: bool, why: str = "") -> None:
        with self._lock:
            ep.in_flight -= 1
            if ok:
                ep.failures = 0
                ep.successes += 1
                if ep.flaps is not None and ep.successes >= STEADY_AFTER:
                    ep.flaps.reset()
                if not ep.healthy:
                    log.warning("model server %s answers again: back in the pool", ep.url)
                    ep.ejected_at = None
                return
            ep.failures += 1
            ep.successes = 0
            ep.errors += 1
            if ep.healthy and ep.failures >= self.eject_after and len(self.endpoints) > 1:
                ep.ejected_at = time.monotonic()
                if ep.flaps is None:
                    ep.flaps = Backoff(self._flap_policy)
                delay = ep.flaps.next_delay()
                ep.next_probe = ep.ejected_at + delay
                log.warning("model server %s failed %d times in a row (%s): out of the pool, probed in %.1f s",
                            ep.url, ep.failures, why, delay)
                self._start_prober()

    def _start_prober(self) -> None:
        if self._prober is None or not self._prober.is_alive():
            self._prober = threading.Thread(target=self._probe_loop, name="corevad-openai.probe", daemon=True)
            self._prober.start()

    def _probe_loop(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                ejected = [e for e in self.endpoints if not e.healthy]
                due = [e for e in ejected if e.next_probe <= time.monotonic()]
            if not ejected:
                return
            for ep in due:
                try:
                    ok = bool(self._probe(ep.url))
                except Exception:  # noqa: BLE001 - a failed probe is just "not yet"
                    ok = False
                with self._lock:
                    if ok and not ep.healthy:
                        ep.ejected_at, ep.failures, ep.successes = None, 0, 0
                        self.readmissions += 1
                        log.warning("model server %s answered a trial completion: back in the pool", ep.url)
                    else:
                        ep.next_probe = time.monotonic() + self.probe_interval_s
            self._closed.wait(min(1.0, self.probe_interval_s / 4))

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"url": e.url, "healthy": e.healthy, "in_flight": e.in_flight, "requests": e.requests,
                     "errors": e.errors, "probe_delay_s": (e.flaps.policy.base(max(e.flaps.attempt - 1, 0))
                                                           if e.flaps is not None else self.probe_interval_s)}
                    for e in self.endpoints]

    def close(self) -> None:
        self._closed.set()


class OpenAIBackend:
    """VLMBackend posting one chat-completions request per segment (its frames as JPEG data URLs).

    Up to options.concurrency requests run at once, spread over the replicas of options.base_url (one URL or
    a list; EndpointPool). Timeouts, connection errors, 429 and 5xx are retried: at once on another replica
    while one is left untried, else after an exponential backoff (Retry-After honoured up to retry.max_s,
    never longer); other 4xx fail at once with the server's message. answer() blocks until every clip of the
    call has an answer, in order; close() interrupts waits between retries, and requests run in daemon
    threads so a hung server never keeps the process alive. answer_scored() adds the label's probability
    from the first token's logprobs where the server gives them.
    """

    name = "openai"

    def __init__(self, config: VLMConfig | None = None, *, prompt: str | None = None) -> None:
        import httpx

        self.config = config or VLMConfig(backend="openai")
        opts = self.config.openai
        self.options = opts
        headers = {"Content-Type": "application/json"}
        if opts.api_key_env:
            key = os.environ.get(opts.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s),
            limits=httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency),
        )
        self.pool = EndpointPool(opts.urls, eject_after=opts.eject_after, probe_interval_s=opts.probe_interval_s,
                                 logprobs=opts.logprobs is not False, probe=self._probe)
        self._pool = DaemonPool(opts.concurrency, name="corevad-openai")
        self._closed = threading.Event()
        self._policy = opts.retry.policy()
        self.template = prompt if prompt is not None else load_prompt(self.config.prompt_path)
        self._httpx = httpx
        self.requests_sent = 0
        self.retries = 0
        self.answers_cut = 0  # answers longer than max_answer_chars, cut there
        self.answers_refused = 0  # responses larger than max_response_bytes, not read
        self.verdict_requests = 0  # describe on_demand: verdict requests (VERDICT_TOKENS) ...
        self.described = 0  # ... and the segments then described

    def build_request(self, clip: Clip, *, max_tokens: int | None = None) -> dict[str, Any]:
        """The JSON body for one clip: text and image parts interleaved in frame order, each frame one
        max_side x max_side image (one InternVL tile, as the live path and the paper send)."""
        if clip.frames is None or len(clip.frames) == 0:
            raise ModelError(f"clip {clip.source}#{clip.index} has no frames (the openai backend needs them)")
        opts = self.options
        pieces = camera_prompt(self.template, clip.context, len(clip.frames), image_token=_SLOT).split(_SLOT)
        content: list[dict[str, Any]] = []
        for k, text in enumerate(pieces):
            if text:
                content.append({"type": "text", "text": text})
            if k < len(clip.frames):
                url = encode_jpeg_data_url(clip.frames[k], quality=opts.jpeg_quality, max_side=opts.max_side,
                                           square=opts.square)
                content.append({"type": "image_url", "image_url": {"url": url}})
        body: dict[str, Any] = {
            "model": opts.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.config.max_new_tokens if max_tokens is None else max_tokens,
            "temperature": opts.temperature,
            "stream": False,
        }
        body.update(opts.extra_body)
        return body

    def _probe(self, url: str) -> bool:
        """One real 1-token completion: True when the replica answers it with a readable choice."""
        body = {"model": self.options.model, "messages": _PROBE_MESSAGES, "max_tokens": 1, "temperature": 0.0,
                "stream": False}
        status, data, _ = self._read(url + "/chat/completions", body)
        if status != 200:
            return False
        try:
            return isinstance(json.loads(data)["choices"][0]["message"], dict)
        except (ValueError, KeyError, IndexError, TypeError):
            return False

    def _read(self, url: str, body: dict[str, Any]) -> tuple[int, bytes, str | None]:
        """POST and read the response body, never more than max_response_bytes of it (a server that does not
        stop must not fill memory): a larger body is an OpenAIError of kind "too_large"."""
        limit = self.options.max_response_bytes
        with self._client.stream("POST", url, json=body) as resp:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                self.answers_refused += 1
                raise OpenAIError(f"{url}: response of {int(declared)} bytes is over max_response_bytes ({limit})",
                                  kind="too_large")
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    self.answers_refused += 1
                    raise OpenAIError(f"{url}: response is over max_response_bytes ({limit})", kind="too_large")
                chunks.append(chunk)
            return resp.status_code, b"".join(chunks), resp.headers.get("Retry-After")

    def _post(self, clip: Clip, *, max_tokens: int | None = None, extra: dict[str, Any] | None = None) -> Answer:
        body = self.build_request(clip, max_tokens=max_tokens)
        if extra:
            body.update(extra)
        opts = self.options
        pool = self.pool
        last: str = ""
        kind = "error"
        status: int | None = None
        backoff = Backoff(self._policy)
        tried: set[str] = set()
        where = f"video {clip.source}, segment {clip.index}"
        attempt = 0
        while True:
            if self._closed.is_set():
                raise OpenAIError(f"backend closed before {where} was answered", kind="closed")
            ep = pool.acquire(exclude=tried)
            url = ep.url + "/chat/completions"
            sent = {**body, "logprobs": True, "top_logprobs": opts.top_logprobs} if ep.logprobs else body
            hint: float | None = None
            try:
                self.requests_sent += 1
                code, data, retry_after = self._read(url, sent)
            except self._httpx.TimeoutException as exc:
                last, kind, status = f"{url}: {type(exc).__name__}: {exc}", "timeout", None
            except self._httpx.TransportError as exc:
                last, kind, status = f"{url}: {type(exc).__name__}: {exc}", "connection", None
            except OpenAIError:
                pool.release(ep, ok=True)  # the server answered; the answer is what is refused
                raise
            else:
                if code == 200:
                    pool.release(ep, ok=True)
                    return self._answer(data, f"{url} ({where})")
                detail = data[:500].decode("utf-8", "replace")
                if code not in _RETRY_STATUS:
                    pool.release(ep, ok=True)  # the server is up; the request is what it refused
                    if ep.logprobs and opts.logprobs == "auto" and "logprobs" in detail:
                        ep.logprobs = False  # transformers serve refuses the field: ask that replica without it
                        log.warning("model server %s does not give logprobs: p_anomalous is not available from "
                                    "it", ep.url)
                        continue
                    raise OpenAIError(f"server error {code} from {url} ({where}): {detail}", status=code)
                status, kind = code, ""
                last = f"{url}: HTTP {code}: {detail}"
                hint = retry_after_s(retry_after)
            pool.release(ep, ok=False, why=last)
            if attempt >= opts.max_retries:
                break
            attempt += 1
            self.retries += 1
            tried.add(ep.url)
            if len(tried) < len(pool):
                continue  # another replica has not been tried for this segment: go there now
            tried.clear()
            if self._closed.wait(backoff.next_delay(at_least=hint)):
                raise OpenAIError(f"backend closed while retrying {where}; last error: {last}", kind="closed")
        raise OpenAIError(f"no answer for {where} after {opts.max_retries + 1} attempts; last error: {last}",
                          status=status, kind=kind or None)

    def _answer(self, data: bytes, where: str) -> Answer:
        try:
            choice = json.loads(data)["choices"][0]
            content = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise OpenAIError(f"malformed completion from {where}: {data[:300]!r}", kind="malformed") from exc
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text, cut = cut_answer(str(content or "").strip(), self.config.max_answer_chars)
        if cut:
            self.answers_cut += 1
            log.warning("answer from %s is longer than max_answer_chars (%d): cut", where,
                        self.config.max_answer_chars)
        return Answer(text, _first_token_p(choice.get("logprobs")), cut=cut)

    def _post_on_demand(self, clip: Clip) -> Answer:
        """describe on_demand. "two_requests": a VERDICT_TOKENS request (with logprobs where the replica gives them)
        for the verdict, then the full request only where prompt.needs_description says so (vLLM's prefix
        cache, which hashes the images, saves most of its prefill). "stop": one request that stops at the
        normal verdict line (stop sequence "Normal scenes."), so only anomalous answers run on."""
        if self.options.describe_via == "stop":
            stop = VERDICT_LINES[0]
            a = self._post(clip, extra={"stop": [stop], "include_stop_str_in_output": True})
            if a.text.endswith(stop) and label_of_token(a.text.split()[0]) == 0:
                return Answer(VERDICT_LINES[0], a.p_anomalous, described=False)
            return a
        first, pending = self._verdict(clip)
        if not pending:
            return first
        try:
            return self._describe(clip, first)
        except OpenAIError as exc:
            if first.text:  # the verdict is known: keep it, undescribed
                return first
            return Answer("", first.p_anomalous, described=False, error=str(exc), error_kind=exc.kind)

    def _verdict(self, clip: Clip) -> tuple[Answer, bool]:
        """describe_via two_requests, the first request: the verdict, and whether the segment needs its description
        (then the answer is its verdict line, or "" when VERDICT_TOKENS tokens did not tell the label)."""
        self.verdict_requests += 1
        first = self._post(clip, max_tokens=VERDICT_TOKENS)
        if not needs_description(first.text, first.p_anomalous, describe_above=self.config.describe_above):
            return Answer(VERDICT_LINES[0], first.p_anomalous, described=False), False
        words = first.text.split()
        label = label_of_token(words[0]) if words else None
        return Answer(VERDICT_LINES[label] if label is not None else "", first.p_anomalous, described=False), True

    def _describe(self, clip: Clip, first: Answer) -> Answer:
        """describe_via two_requests, second request: the full answer (vLLM's prefix cache, which hashes the
        images, saves most of its prefill). Raises OpenAIError."""
        self.described += 1
        full = self._post(clip)
        # The verdict's probability is the first request's (the full answer's first token is the same one).
        return Answer(full.text, first.p_anomalous if first.p_anomalous is not None else full.p_anomalous,
                      cut=full.cut)

    @property
    def two_phase(self) -> bool:
        """describe on_demand with describe_via two_requests splits: every verdict request of the batch first,
        then the full requests. With describe_via stop one request carries both, so verdict and description
        arrive together (no split)."""
        return (self.config.describe == "on_demand" and self.config.describe_delivery == "two_phase"
                and self.options.describe_via == "two_requests")

    def verdicts(self, clips: Sequence[Clip], prepared: Any = None) -> VerdictPass:
        """Phase one of two_requests for the whole batch (up to options.concurrency requests in flight); describe()
        sends the full requests of the rows that need a description. A verdict request that fails raises here
        (the batch is unanswered, as in one pass); a full request that fails costs only its row's description."""
        if self.config.describe != "on_demand" or self.options.describe_via != "two_requests":
            raise ModelError("verdicts() needs describe: on_demand with openai.describe_via: two_requests")
        firsts = list(self._pool.map(self._verdict, clips))
        pending = [i for i, (_, needed) in enumerate(firsts) if needed]
        # A clip's frames are a view into the camera's ring, given back once the verdicts are out: keep a copy
        # of the few that are sent again.
        # dataclasses.replace keeps every other field (the camera's scene context): the second request must be
        # the first one's prompt, or the description ignores the context and vLLM's prefix cache misses.
        later = [(dataclasses.replace(clips[i], frames=None if clips[i].frames is None
                                      else np.array(clips[i].frames)), firsts[i][0]) for i in pending]
        answers: list[Answer | None] = [None if needed and not a.text else a for a, needed in firsts]

        def one(item: tuple[Clip, Answer]) -> Answer:
            clip, first = item
            try:
                return self._describe(clip, first)
            except OpenAIError as exc:
                return Answer("", first.p_anomalous, described=False, error=str(exc), error_kind=exc.kind)

        return VerdictPass(answers, pending, lambda: list(self._pool.map(one, later)))

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        """Raw answer per clip, same order; up to options.concurrency requests in flight."""
        return [a.text for a in self.answer_scored(clips)]

    def answer_scored(self, clips: Sequence[Clip]) -> list[Answer]:
        """answer() with each answer's P(Anomalous) where the server gave logprobs (else None)."""
        post = self._post_on_demand if self.config.describe == "on_demand" else self._post
        return list(self._pool.map(post, clips))

    def endpoint_stats(self) -> list[dict[str, Any]]:
        return self.pool.stats()

    def close(self) -> None:
        """Interrupt retry waits and give up queued requests; a request in flight is abandoned (daemon thread)."""
        self._closed.set()
        self.pool.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _first_token_p(logprobs: Any) -> float | None:
    """P(Anomalous) from an OpenAI `logprobs` object: the first token and its top alternatives."""
    try:
        first = logprobs["content"][0]
        cands = {t["token"]: float(t["logprob"]) for t in first.get("top_logprobs") or []}
        cands.setdefault(first["token"], float(first["logprob"]))  # the chosen token is usually listed too
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None
    return p_anomalous(cands.items())
