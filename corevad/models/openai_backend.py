"""VLM backend for any OpenAI-compatible chat-completions server (vLLM, LMDeploy, transformers serve...)."""

from __future__ import annotations

import base64
import email.utils
import io
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backoff import Backoff, BackoffPolicy
from ..errors import ModelError
from ..prompt import load_prompt, render_prompt
from ..threads import DaemonPool
from .base import Clip
from .config import VLMConfig

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


class OpenAIBackend:
    """VLMBackend posting one chat-completions request per segment (its frames as JPEG data URLs).

    Up to options.concurrency requests run at once; timeouts, connection errors, 429 and 5xx are
    retried with exponential backoff (Retry-After honoured up to max_backoff_s, never longer); other 4xx
    fail at once with the server's message. answer() blocks until every clip of the call has an answer, in
    order; close() interrupts waits between retries, and requests run in daemon threads so a hung server
    never keeps the process alive.
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
        self.url = opts.base_url.rstrip("/") + "/chat/completions"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s),
            limits=httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency),
        )
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

    def _post(self, clip: Clip) -> str:
        body = self.build_request(clip)
        opts = self.options
        where = f"{self.url} (video {clip.source}, segment {clip.index})"
        last: str = ""
        kind = "error"
        status: int | None = None
        backoff = Backoff(self._policy)
        for attempt in range(opts.max_retries + 1):
            if self._closed.is_set():
                raise OpenAIError(f"backend closed before {where} was answered", kind="closed")
            if attempt:
                self.retries += 1
            hint: float | None = None
            try:
                self.requests_sent += 1
                resp = self._client.post(self.url, json=body)
            except self._httpx.TimeoutException as exc:
                last, kind, status = f"{type(exc).__name__}: {exc}", "timeout", None
            except self._httpx.TransportError as exc:
                last, kind, status = f"{type(exc).__name__}: {exc}", "connection", None
            else:
                if resp.status_code == 200:
                    return self._content(resp, where)
                detail = resp.text[:500]
                if resp.status_code not in _RETRY_STATUS:
                    raise OpenAIError(
                        f"server error {resp.status_code} from {where}: {detail}", status=resp.status_code
                    )
                status, kind = resp.status_code, ""
                last = f"HTTP {resp.status_code}: {detail}"
                hint = retry_after_s(resp.headers.get("Retry-After"))
            if attempt < opts.max_retries and self._closed.wait(backoff.next_delay(at_least=hint)):
                raise OpenAIError(f"backend closed while retrying {where}; last error: {last}", kind="closed")
        raise OpenAIError(f"no answer from {where} after {opts.max_retries + 1} attempts; last error: {last}",
                          status=status, kind=kind or None)

    @staticmethod
    def _content(resp: Any, where: str) -> str:
        try:
            message = resp.json()["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise OpenAIError(f"malformed completion from {where}: {resp.text[:300]}", kind="malformed") from exc
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return (content or "").strip()

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        """Raw answer per clip, same order; up to options.concurrency requests in flight."""
        return list(self._pool.map(self._post, clips))

    def close(self) -> None:
        """Interrupt retry waits and give up queued requests; a request in flight is abandoned (daemon thread)."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
