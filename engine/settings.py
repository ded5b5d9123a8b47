"""Validated settings for a search and for the backend it runs on."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from engine.errors import ConfigError

BACKENDS = ("local", "openai", "tinker")
MODES = ("parallel", "sequential")
APIS = ("completions", "chat")
WEIGHTS = ("auto", "plain")  # local weight layout: probed for speed, or ggml's generic CPU layout

KEYED_HOSTS = ("openai.com", "x.ai")  # hosted APIs that refuse keyless requests; local servers need none
DEFAULT_PROMPT = "Explain in three sentences why the sky is blue."


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of one block-wise power beam search."""

    prompt: str = DEFAULT_PROMPT
    system_prompt: str | None = None
    beam_width: int = 4
    n_per_beam: int = 4
    block_tokens: int = 32
    max_tokens: int = 128
    alpha: float = 4.0
    temperature: float | None = None  # None: the power-sampling proposal 1/alpha
    length_penalty: float = 1.0
    seed: int | None = None  # None: a fresh seed, reported in SearchStarted
    mode: Literal["parallel", "sequential"] = "parallel"

    @property
    def proposal_temperature(self) -> float:
        return 1.0 / self.alpha if self.temperature is None else self.temperature

    @property
    def max_blocks(self) -> int:
        return -(-self.max_tokens // self.block_tokens)

    def validate(self) -> SearchSettings:
        for name in ("beam_width", "n_per_beam", "block_tokens", "max_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.block_tokens > self.max_tokens:
            raise ConfigError(
                f"block-tokens ({self.block_tokens}) cannot be larger than max-tokens ({self.max_tokens})"
            )
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha!r}")
        if self.temperature is not None and not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature!r}")
        if not self.length_penalty >= 0:
            raise ConfigError(f"length-penalty must be >= 0, got {self.length_penalty!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.prompt.strip():
            raise ConfigError("prompt is empty")
        return self

    def replace(self, **changes) -> SearchSettings:
        return dataclasses.replace(self, **changes).validate()


@dataclass(frozen=True)
class BackendSettings:
    """Where requests go and how the shared request layer treats them."""

    backend: str = "local"
    base_url: str | None = None
    model: str | None = None
    model_path: str | None = None
    tokenizer: str | None = None
    api: Literal["completions", "chat"] = "completions"
    max_concurrent: int = 32
    timeout: float = 60.0
    max_retries: int = 5
    latency: float = 0.0  # simulated network delay per request, local backend only
    threads: int | None = None
    weights: Literal["auto", "plain"] = "auto"

    def validate(self) -> BackendSettings:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.api not in APIS:
            raise ConfigError(f"api must be one of {', '.join(APIS)}, got {self.api!r}")
        if not isinstance(self.max_concurrent, int) or self.max_concurrent < 1:
            raise ConfigError(f"max-concurrent must be an integer >= 1, got {self.max_concurrent!r}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max-retries must be an integer >= 0, got {self.max_retries!r}")
        if not self.latency >= 0:
            raise ConfigError(f"latency must be >= 0 seconds, got {self.latency!r}")
        if self.latency and self.backend != "local":
            raise ConfigError("--latency simulates network delay on the local backend only")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads!r}")
        if self.weights not in WEIGHTS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        if self.backend == "openai":
            if not self.base_url:
                raise ConfigError("the openai backend needs --base-url, for example http://127.0.0.1:8000/v1")
            check_url(self.base_url)
            if not self.model:
                raise ConfigError("the openai backend needs --model")
            host = urlparse(self.base_url).hostname or ""
            if host.endswith(KEYED_HOSTS) and not self.api_key():
                raise ConfigError(f"{self.base_url} needs {self.api_key_env} in the environment")
        if self.backend == "tinker" and not self.model:
            raise ConfigError("the tinker backend needs --model, a base model name such as meta-llama/Llama-3.2-1B")
        if self.model_path and self.backend != "local":
            raise ConfigError("--model-path is for the local backend; use --model for remote backends")
        if self.model_path and not Path(self.model_path).expanduser().is_file():
            raise ConfigError(f"model file not found: {self.model_path}")
        return self

    def replace(self, **changes) -> BackendSettings:
        return dataclasses.replace(self, **changes).validate()

    @property
    def api_key_env(self) -> str:
        if self.backend == "tinker":
            return "TINKER_API_KEY"
        if self.base_url and "x.ai" in (urlparse(self.base_url).hostname or ""):
            return "XAI_API_KEY"
        return "OPENAI_API_KEY"

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


def check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"malformed base URL {url!r}: expected http(s)://host[:port]/v1")
    try:
        parsed.port  # noqa: B018 - urllib validates the port only when it is read
    except ValueError:
        raise ConfigError(f"malformed base URL {url!r}: bad port") from None
