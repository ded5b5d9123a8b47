"""Shared fixtures: the real embedded model, the fault-injecting endpoint, llama.cpp's own OpenAI server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.backends.local.backend import LocalSampler
from engine.backends.local.layout import PLAIN, weight_layout
from engine.backends.local.model_file import embedded_model_path
from engine.settings import BackendSettings, SearchSettings
from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT_S = 60


def _layouts_to_test() -> list[str]:
    """The layout this machine probes to, and the plain one too, so both decoding paths stay tested."""
    import llama_cpp

    return sorted({weight_layout(llama_cpp, embedded_model_path()), PLAIN})


@pytest.fixture(scope="session")
def local_sampler():
    """One loaded embedded model for the whole session; its worker thread serves every test's event loop."""
    sampler = LocalSampler(threads=2)
    asyncio.run(sampler.start())
    yield sampler
    asyncio.run(sampler.aclose())


@pytest.fixture(scope="session", params=_layouts_to_test())
def layout_sampler(request):
    """The embedded model in each weight layout that runs on this machine, for the decoder's own tests."""
    sampler = LocalSampler(threads=2, layout=request.param)
    asyncio.run(sampler.start())
    yield sampler
    asyncio.run(sampler.aclose())


@pytest.fixture
def small_search() -> SearchSettings:
    return SearchSettings(prompt="Name a color.", beam_width=2, n_per_beam=2, block_tokens=6, max_tokens=12, seed=3)


@pytest.fixture
def fault_server(request):
    """A fault-injecting endpoint on 127.0.0.1; parametrize indirectly with a FaultConfig to inject faults."""
    config = getattr(request, "param", None) or FaultConfig()
    with ThreadedFaultServer(config) as server:
        yield server


def openai_settings(base_url: str, **changes) -> BackendSettings:
    return BackendSettings(backend="openai", base_url=base_url, model="synthetic", tokenizer="embedded", **changes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` serving the embedded GGUF on loopback: ignores `n`, refuses token prompts."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")
    command = [
        sys.executable, "-m", "tests.llama_server", "--model", str(embedded_model_path()),
        "--host", "127.0.0.1", "--port", str(port), "--logits_all", "true", "--n_ctx", "2048",
        "--model_alias", "smollm2", "--verbose", "false", "--flash_attn", "true",  # as llama.cpp's default runs
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("llama_cpp.server did not start in time")
    yield base_url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, stdin: str | None = None):
    """Run `beamtui` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
