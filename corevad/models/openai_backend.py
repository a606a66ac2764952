"""VLM backend for OpenAI-compatible chat-completions servers (vLLM, LMDeploy, SGLang, transformers serve),
one or a pool of replicas."""

from __future__ import annotations

import base64
import email.utils
import io
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
from ..prompt import load_prompt, p_anomalous, render_prompt
from ..threads import DaemonPool
from .base import Answer, Clip
from .config import VLMConfig

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
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


def encode_jpeg_data_url(frame: np.ndarray, *, quality: int = 90, max_side: int | None = None) -> str:
    """(H, W, 3) uint8 RGB -> "data:image/jpeg;base64,...", downscaled so max(H, W) <= max_side."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame), mode="RGB")
    if max_side is not None and max(img.size) > max_side:
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

    @property
    def healthy(self) -> bool:
        return self.ejected_at is None


class EndpointPool:
    """Replicas behind one backend: each request goes to the least loaded healthy replica (fewest requests in
    flight, then fewest sent); `eject_after` failures in a row take a replica out, and a prober thread asks
    an ejected one `GET <url>/models` every `probe_interval_s` and re-admits it when it answers 200.

    Why in the client: vLLM/LMDeploy/SGLang replicas (one per GPU or machine) need no balancer in front,
    and the client knows which segment failed where, so it can retry it on another replica."""

    def __init__(self, urls: Sequence[str], *, eject_after: int, probe_interval_s: float, logprobs: bool,
                 probe: Any) -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.endpoints = [Endpoint(u, logprobs) for u in urls]
        self.eject_after = eject_after
        self.probe_interval_s = probe_interval_s
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
                if not ep.healthy:
                    log.warning("model server %s answers again: back in the pool", ep.url)
                    ep.ejected_at = None
                return
            ep.failures += 1
            ep.errors += 1
            if ep.healthy and ep.failures >= self.eject_after and len(self.endpoints) > 1:
                ep.ejected_at = time.monotonic()
                ep.next_probe = ep.ejected_at + self.probe_interval_s
                log.warning("model server %s failed %d times in a row (%s): out of the pool, probed every %.0f s",
                            ep.url, ep.failures, why, self.probe_interval_s)
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
                        ep.ejected_at, ep.failures = None, 0
                        log.warning("model server %s answers its health probe: back in the pool", ep.url)
                    else:
                        ep.next_probe = time.monotonic() + self.probe_interval_s
            self._closed.wait(min(1.0, self.probe_interval_s / 4))

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"url": e.url, "healthy": e.healthy, "in_flight": e.in_flight, "requests": e.requests,
                     "errors": e.errors} for e in self.endpoints]

    def close(self) -> None:
        self._closed.set()


class OpenAIBackend:
    """VLMBackend posting one chat-completions request per segment (its frames as JPEG data URLs).

    Up to options.concurrency requests run at once, spread over the replicas of options.base_url (one URL or
    a list; EndpointPool). Timeouts, connection errors, 429 and 5xx are retried: at once on another replica
    while one is left untried, else after an exponential backoff (Retry-After honoured up to max_backoff_s,
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
        self._policy = BackoffPolicy(initial_s=opts.backoff_s, max_s=max(opts.max_backoff_s, opts.backoff_s),
                                     factor=2.0, jitter=0.0)
        self.template = prompt if prompt is not None else load_prompt(self.config.prompt_path)
        self._httpx = httpx
        self.requests_sent = 0
        self.retries = 0

    def build_request(self, clip: Clip) -> dict[str, Any]:
        """The JSON body for one clip: text and image parts interleaved in frame order."""
        if clip.frames is None or len(clip.frames) == 0:
            raise ModelError(f"clip {clip.source}#{clip.index} has no frames (the openai backend needs them)")
        opts = self.options
        pieces = render_prompt(self.template, len(clip.frames), image_token=_SLOT).split(_SLOT)
        content: list[dict[str, Any]] = []
        for k, text in enumerate(pieces):
            if text:
                content.append({"type": "text", "text": text})
            if k < len(clip.frames):
                url = encode_jpeg_data_url(clip.frames[k], quality=opts.jpeg_quality, max_side=opts.max_side)
                content.append({"type": "image_url", "image_url": {"url": url}})
        body: dict[str, Any] = {
            "model": opts.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.config.max_new_tokens,
            "temperature": opts.temperature,
            "stream": False,
        }
        body.update(opts.extra_body)
        return body

    def _probe(self, url: str) -> bool:
        return bool(self._client.get(url + "/models", timeout=self.options.connect_timeout_s).status_code == 200)

    def _post(self, clip: Clip) -> Answer:
        body = self.build_request(clip)
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
                resp = self._client.post(url, json=sent)
            except self._httpx.TimeoutException as exc:
                last, kind, status = f"{url}: {type(exc).__name__}: {exc}", "timeout", None
            except self._httpx.TransportError as exc:
                last, kind, status = f"{url}: {type(exc).__name__}: {exc}", "connection", None
            else:
                if resp.status_code == 200:
                    pool.release(ep, ok=True)
                    return self._answer(resp, f"{url} ({where})")
                detail = resp.text[:500]
                if resp.status_code not in _RETRY_STATUS:
                    pool.release(ep, ok=True)  # the server is up; the request is what it refused
                    if ep.logprobs and opts.logprobs == "auto" and "logprobs" in detail:
                        ep.logprobs = False  # transformers serve refuses the field: ask that replica without it
                        log.warning("model server %s does not give logprobs: p_anomalous is not available from "
                                    "it", ep.url)
                        continue
                    raise OpenAIError(f"server error {resp.status_code} from {url} ({where}): {detail}",
                                      status=resp.status_code)
                status, kind = resp.status_code, ""
                last = f"{url}: HTTP {resp.status_code}: {detail}"
                hint = retry_after_s(resp.headers.get("Retry-After"))
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

    @staticmethod
    def _answer(resp: Any, where: str) -> Answer:
        try:
            choice = resp.json()["choices"][0]
            content = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise OpenAIError(f"malformed completion from {where}: {resp.text[:300]}", kind="malformed") from exc
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return Answer((content or "").strip(), _first_token_p(choice.get("logprobs")))

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        """Raw answer per clip, same order; up to options.concurrency requests in flight."""
        return [a.text for a in self.answer_scored(clips)]

    def answer_scored(self, clips: Sequence[Clip]) -> list[Answer]:
        """answer() with each answer's P(Anomalous) where the server gave logprobs (else None)."""
        return list(self._pool.map(self._post, clips))

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
