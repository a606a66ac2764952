"""A real vLLM (CPU build) OpenAI-compatible server for the tests, from its own venv (PLATFORM.md, "vLLM on the
CPU"): built by tools/setup.sh --dev or, when missing, by the fixture (tools/setup_vllm.sh, bounded), found at
$COREVAD_VLLM_VENV (default: .venv-vllm in the checkout), started in its own session on a loopback port,
health-polled with a bound, and stopped as a process group (it spawns EngineCore and worker processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .services import free_port

# The checkout (corevad_stream/testing/ -> the repo root): where tools/setup_vllm.sh and the default venv live.
ROOT = Path(__file__).resolve().parents[2]
VLLM_VERSION = "0.32.0"  # tools/setup_vllm.sh installs this one
SETUP_TIMEOUT_S = 1200.0  # 3-4 min measured; a loaded CI machine gets slack
START_TIMEOUT_S = 300.0  # /health answered after 41-55 s (eager) on 2 quiet cores


class VLLMError(RuntimeError):
    """The vLLM venv could not be built or the server did not come up (the message carries its log's tail)."""


def vllm_venv() -> Path:
    """The vLLM venv, built now if it is not there yet (the build is idempotent and stamped)."""
    venv = Path(os.environ.get("COREVAD_VLLM_VENV") or ROOT / ".venv-vllm")
    if (venv / f".corevad-vllm-{VLLM_VERSION}").is_file():
        return venv
    log = venv.parent / f"{venv.name}.setup.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        try:
            rc = subprocess.run(["bash", str(ROOT / "tools" / "setup_vllm.sh"), str(venv)], stdout=out,
                                stderr=subprocess.STDOUT, timeout=SETUP_TIMEOUT_S, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    if rc != 0:
        raise VLLMError(f"building the vLLM venv at {venv} failed ({rc}); log {log}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
    return venv


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` serving one model folder as "tiny"; .url is its /v1 root.

    Frames are one tile each (--mm-processor-kwargs max_dynamic_patch 1, as the README's command), float32 (it
    would downcast to bf16), eager (no compile: 41-55 s to ready instead of 65-154 s)."""

    def __init__(self, workdir: Path, model_dir: Path, *, venv: Path, served_name: str = "tiny") -> None:
        self.workdir = workdir
        self.model_dir = model_dir
        self.venv = venv
        self.served_name = served_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = workdir / "vllm.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model_dir), "--served-model-name", self.served_name,
                "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", "4096",
                "--limit-mm-per-prompt", json.dumps({"image": 8}),
                "--mm-processor-kwargs", json.dumps({"max_dynamic_patch": 1}),
                "--enforce-eager", "--dtype", "float32"]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1",
               "PYTHONPATH": ""}  # the project's worktree must not shadow vLLM's own packages
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                         env=env, start_new_session=True)
        while not self._healthy():
            if self.proc.poll() is not None:
                raise VLLMError(f"vLLM exited with {self.proc.returncode}; log:\n{self.log_text()[-3000:]}")
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise VLLMError(f"vLLM not healthy after {timeout:.0f} s; log:\n{self.log_text()[-3000:]}")
            time.sleep(0.5)
        self.ready_s = time.monotonic() - t0
        print(f"vLLM ready in {self.ready_s:.1f} s", file=sys.stderr)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metric(self, name: str) -> float:
        """The sum of a Prometheus counter on /metrics (e.g. vllm:prompt_tokens_total)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read(4 * 1024 * 1024).decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after timeout seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(10)
        try:  # the engine's children, if any outlived their parent
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
