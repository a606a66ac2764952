"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1 (a double for model faults in tests and tools).

The test switches its behaviour at any moment: answer (by a function of the request), HTTP 500, 429 with a
Retry-After, hang (until released or a bound), garbage text, empty answers, malformed JSON. It speaks
real HTTP over a real socket, so the backend's client, retries and timeouts are exercised as in production.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["answer", "error500", "rate_limit", "hang", "garbage", "empty", "malformed"]


class ScriptedModelServer:
    """`with ScriptedModelServer() as srv:` -> srv.base_url (…/v1); set srv.mode / srv.answer at any time."""

    def __init__(self, answer: Callable[[dict[str, Any]], str] | None = None, *, hang_limit_s: float = 60.0) -> None:
        self.answer = answer or (lambda body: "Normal scenes.\nPeople walk past the shop.")
        # The first token's alternatives [(token, logprob), ...] sent when a request asks for logprobs (None:
        # the server gives none, like one that ignores the field).
        self.first_token_logprobs: Callable[[dict[str, Any]], list[tuple[str, float]]] | None = None
        self.mode: Mode = "answer"
        self.retry_after = "3600"
        self.hang_limit_s = hang_limit_s
        self.requests = 0
        self.by_mode: dict[str, int] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._send(200, b'{"status": "ok"}')

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                mode = server.mode
                with server._lock:
                    server.requests += 1
                    server.by_mode[mode] = server.by_mode.get(mode, 0) + 1
                if mode == "hang":
                    server.release.wait(server.hang_limit_s)
                    mode = server.mode if server.mode != "hang" else "error500"
                if mode == "error500":
                    self._send(500, b'{"error": "scripted outage"}')
                elif mode == "rate_limit":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": server.retry_after})
                elif mode == "malformed":
                    self._send(200, b'{"choices": "nope"')
                else:
                    text = ("<unk> %%% ### the the the" if mode == "garbage" else "" if mode == "empty"
                            else server.answer(body))
                    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": text}}
                    if body.get("logprobs") and server.first_token_logprobs is not None:
                        top = server.first_token_logprobs(body)[: int(body.get("top_logprobs") or 0) or None]
                        choice["logprobs"] = {"content": [{"token": top[0][0], "logprob": top[0][1], "top_logprobs": [
                            {"token": t, "logprob": lp} for t, lp in top]}]}
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": int(time.time()),
                                                "choices": [choice]}).encode())

            def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-model", daemon=True)

    def set(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "hang":
            self.release.set()
            self.release = threading.Event()

    def __enter__(self) -> ScriptedModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
