"""Validated settings for a search and for the backend it runs on."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from engine.errors import ConfigError
from engine.registry import CUTS, OUTPUTS, StrategyInfo, spec_grammar, strategy_info

BACKENDS = ("local", "openai", "tinker")
MODES = ("parallel", "sequential")
APIS = ("completions", "chat")
LAYOUTS = ("plain", "repacked", "repacked-one-token")  # the local model's weight layouts (backends/local/layout.py)
WEIGHTS = ("auto", *LAYOUTS)  # auto probes the fastest safe layout
FLASH_ATTN = ("auto", "on", "off")  # the local decoder's flash attention; auto is llama.cpp's own choice

ZERO_ALLOWED = {"mcmc_steps": 0}  # integer settings that may be 0; the others are counts of at least 1
# What a count may be at most: a search past these is a typo, or hours of work on any backend we know (100,000
# particles of 8 tokens ran 4 minutes on the local model without finishing a block).
MOST = {"beam_width": 1024, "n_per_beam": 64, "chains": 1024, "mcmc_steps": 1000, "tries": 16, "particles": 1024,
        "best_of": 1024, "votes": 1024, "top_k": 20, "rollouts": 64, "block_tokens": 262_144, "max_tokens": 262_144}
MOST_CANDIDATES = 4096  # beam_width x n_per_beam: the candidates of one block
MAX_SEED = 2**63 - 1
MOST_STOPS = 4  # as the OpenAI API allows
LOCAL_SEQUENCE_TOKENS = 2048  # the local decoder's context per sequence, prompt and answer together
KEYED_HOSTS = ("openai.com", "x.ai")  # hosted APIs that refuse keyless requests; local servers need none
DEFAULT_PROMPT = "Explain in three sentences why the sky is blue."


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of one search. The shared ones mean the same in every strategy: the target is p^alpha, proposals
    are drawn at `proposal_temperature` in blocks of `block_tokens`, up to `max_tokens`."""

    strategy: str = "beam"
    prompt: str = DEFAULT_PROMPT
    system_prompt: str | None = None
    block_tokens: int = 32
    max_tokens: int = 128
    alpha: float = 4.0
    temperature: float | None = None  # None: the power-sampling proposal 1/alpha
    seed: int | None = None  # None: a fresh seed, reported in SearchStarted
    mode: Literal["parallel", "sequential"] = "parallel"
    stop: tuple[str, ...] = ()  # strings that end an answer, as the OpenAI API's `stop`
    # beam
    beam_width: int = 4
    n_per_beam: int = 4
    length_penalty: float = 1.0
    # mcmc
    chains: int = 2
    mcmc_steps: int = 5
    tries: int = 1  # proposals per step; above 1, multiple-try Metropolis
    cut: Literal["uniform", "entropy"] = "uniform"  # where a step cuts: uniformly, or where entropy rises
    # smc
    particles: int = 8
    ess_threshold: float = 0.5  # resample when the effective sample size drops below this fraction of particles
    # mcmc and smc: "sample", a draw from p^alpha (a chain's final state chosen uniformly, a particle drawn by
    # weight); "best", the highest target alpha*log p in the final population (mode-seeking)
    output: Literal["sample", "best"] = "sample"
    # sps (scalable power sampling): at each decision the top_k likeliest next tokens, each with `rollouts`
    # continuations of `horizon` tokens (None: the rest of the block) that estimate the p^alpha mass of its futures
    top_k: int = 8
    rollouts: int = 8
    horizon: int | None = None
    # best-of-n
    best_of: int = 8
    # vote
    votes: int = 8

    @property
    def proposal_temperature(self) -> float:
        return 1.0 / self.alpha if self.temperature is None else self.temperature

    @property
    def sampling_temperature(self) -> float:
        """The temperature the strategy samples at: its own when it has one (greedy: 0), else the proposal's."""
        fixed = self.info.temperature
        return self.proposal_temperature if fixed is None else fixed

    @property
    def rollout_horizon(self) -> int:
        """sps: how far each rollout looks ahead of its candidate token."""
        return max(1, self.block_tokens - 1) if self.horizon is None else self.horizon

    @property
    def info(self) -> StrategyInfo:
        return strategy_info(self.strategy)

    @property
    def blockwise(self) -> bool:
        return self.info.blockwise

    @property
    def max_blocks(self) -> int:
        return -(-self.max_tokens // self.block_tokens) if self.blockwise else 1

    @property
    def width_field(self) -> str | None:
        return self.info.width

    @property
    def width(self) -> int:
        return getattr(self, self.width_field) if self.width_field else 1

    def validate(self) -> SearchSettings:
        info = strategy_info(self.strategy)
        for field in dataclasses.fields(self):
            value, least, most = getattr(self, field.name), ZERO_ALLOWED.get(field.name, 1), MOST.get(field.name)
            if field.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise ConfigError(f"{field.name.replace('_', '-')} must be an integer >= {least}, got {value!r}")
            if field.type == "int" and most is not None and value > most:
                raise ConfigError(f"{field.name.replace('_', '-')} must be at most {most:,}, got {value:,}")
        if self.beam_width * self.n_per_beam > MOST_CANDIDATES:
            raise ConfigError(f"beam-width x n-per-beam must be at most {MOST_CANDIDATES:,} candidates a block, got "
                              f"{self.beam_width} x {self.n_per_beam}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise ConfigError(f"seed must be an integer from 0 to 2**63-1, got {self.seed!r}")
        if self.block_tokens > self.max_tokens and self.blockwise:
            raise ConfigError(
                f"block-tokens ({self.block_tokens}) cannot be larger than max-tokens ({self.max_tokens})"
            )
        if self.horizon is not None:
            least = max(1, self.block_tokens - 1)
            if not isinstance(self.horizon, int) or isinstance(self.horizon, bool) or self.horizon < least:
                raise ConfigError(f"horizon must be an integer >= {least} (the rest of a block of {self.block_tokens} "
                                  f"tokens, which its rollouts supply), got {self.horizon!r}")
            if self.horizon > MOST["max_tokens"]:
                raise ConfigError(f"horizon must be at most {MOST['max_tokens']:,}, got {self.horizon:,}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha!r}")
        if self.temperature is not None and not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature!r}")
        if not self.length_penalty >= 0:
            raise ConfigError(f"length-penalty must be >= 0, got {self.length_penalty!r}")
        if not 0 < self.ess_threshold <= 1:
            raise ConfigError(f"ess-threshold must be in (0, 1], got {self.ess_threshold!r}")
        if self.cut not in CUTS:
            raise ConfigError(f"cut must be one of {', '.join(CUTS)}, got {self.cut!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if info.needs_proposal_logprobs and self.proposal_temperature == 0:
            raise ConfigError(f"{self.strategy} needs a proposal temperature > 0: greedy proposals have no density")
        if not self.prompt.strip():
            raise ConfigError("prompt is empty")
        if (not isinstance(self.stop, tuple) or len(self.stop) > MOST_STOPS
                or not all(isinstance(s, str) and s for s in self.stop)):
            raise ConfigError(f"stop must be up to {MOST_STOPS} non-empty strings, got {self.stop!r}")
        return self

    def replace(self, **changes) -> SearchSettings:
        return dataclasses.replace(self, **changes).validate()

    @property
    def spec(self) -> str:
        """The strategy, its sizes and (when not the default) its cut and output in one word, as eval's
        --strategies takes them: beam:4x4, mcmc:2x5, mcmc:2x5:entropy, smc:8:best."""
        info = self.info
        values = [getattr(self, name) for name in info.sizes]
        required = len(info.sizes) - info.optional_sizes
        while len(values) > required and values[-1] == SEARCH_DEFAULTS[info.sizes[len(values) - 1]]:
            values.pop()  # an optional size at its default is left out: mcmc:2x5, not mcmc:2x5x1
        sizes = "x".join(map(str, values))
        words = "".join(f":{getattr(self, name)}" for name, choices in info.choices.items()
                        if getattr(self, name) != choices[0])
        return f"{self.strategy}:{sizes}{words}" if sizes else self.strategy

    def with_spec(self, spec: str) -> SearchSettings:
        """These settings with the strategy, sizes, cut and output of a spec (the inverse of `spec`): greedy,
        sample, best-of-n:8, beam:4x4, mcmc:2x5, mcmc:2x5x4:entropy, smc:8, smc:8:best, mcmc:2x5:sample."""
        name, _, rest = spec.strip().partition(":")
        sizes, *words = rest.split(":") if rest else [""]
        try:
            info = strategy_info(name)
        except ConfigError:
            info = None
        parts = sizes.split("x") if sizes else []
        named = {setting: word for word in words for setting, values in (info.choices if info else {}).items()
                 if word in values}
        if (info is None or len(parts) > len(info.sizes) or not all(p.isdigit() for p in parts)
                or len(named) != len(words)):
            raise ConfigError(f"unknown strategy spec {spec!r}: use {spec_grammar()}")
        changes = {f: SEARCH_DEFAULTS[f] for f in info.sizes[len(info.sizes) - info.optional_sizes:]}
        changes |= {f: int(p) for f, p in zip(info.sizes, parts, strict=False)}
        changes |= {setting: named.get(setting, values[0]) for setting, values in info.choices.items()}
        try:
            return self.replace(strategy=name, **changes)
        except ConfigError as exc:
            raise ConfigError(f"strategy spec {spec!r}: {exc}") from None

    def with_width(self, width: int) -> SearchSettings:
        """The same search at another width (beam width, chains, particles or N, by strategy)."""
        return self.replace(**{self.width_field: width}) if self.width_field else self


@dataclass(frozen=True)
class BackendSettings:
    """Where requests go and how the shared request layer treats them."""

    backend: str = "local"
    base_url: str | None = None
    more_base_urls: tuple[str, ...] = ()  # further replicas of the same model (--base-url given again)
    endpoint_max_concurrent: int | None = None  # requests in flight per endpoint at most
    tinker_clients: int = 1  # Tinker sampling clients, each with the SDK's own 400-request dispatch limit
    model: str | None = None
    model_path: str | None = None
    tokenizer: str | None = None
    api: Literal["completions", "chat"] = "completions"
    max_concurrent: int = 32
    timeout: float = 60.0
    max_retries: int = 5
    latency: float = 0.0  # simulated network delay per request, local backend only
    threads: int | None = None
    weights: str = "auto"
    # llama.cpp's default. Measured on a 2-core EPYC (benchmarks.flash_attention, .logprob_agreement,
    # .local_throughput): with it a request gives the same bits alone and batched (12/12; off: 10/12), its
    # logprobs equal llama.cpp's server's run the same way (off: 0.017 apart on average), and one stream
    # decodes ~14% faster.
    flash_attn: str = "auto"
    # Set for a dashboard served to a browser: the endpoints (host:port) the API key was given for. A visitor
    # who points the backend elsewhere gets no key sent there.
    key_for: tuple[str, ...] | None = None

    @property
    def base_urls(self) -> tuple[str, ...]:
        return ((self.base_url,) if self.base_url else ()) + self.more_base_urls

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
        if self.threads is not None and self.backend != "local":
            raise ConfigError(f"--threads sets the local model's CPU threads; it has no effect on {self.backend}")
        if self.api != "completions" and self.backend != "openai":
            raise ConfigError(f"--api is for the openai backend, not {self.backend}")
        if self.weights not in WEIGHTS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        if self.flash_attn not in FLASH_ATTN:
            raise ConfigError(f"flash-attn must be one of {', '.join(FLASH_ATTN)}, got {self.flash_attn!r}")
        if self.flash_attn != BackendSettings.flash_attn and self.backend != "local":
            raise ConfigError(f"--flash-attn is for the local decoder; it has no effect on the {self.backend} backend")
        if self.weights != "auto" and self.backend != "local":
            raise ConfigError("--weights chooses the local model's weight layout; it has no effect on "
                              f"the {self.backend} backend")
        if (self.more_base_urls or self.endpoint_max_concurrent is not None) and self.backend != "openai":
            raise ConfigError(f"several endpoints and --endpoint-max-concurrent are for the openai backend, not "
                              f"{self.backend}")
        if not isinstance(self.tinker_clients, int) or self.tinker_clients < 1:
            raise ConfigError(f"tinker-clients must be an integer >= 1, got {self.tinker_clients!r}")
        if self.tinker_clients != 1 and self.backend != "tinker":
            raise ConfigError(f"--tinker-clients is for the tinker backend, not {self.backend}")
        if self.endpoint_max_concurrent is not None and (not isinstance(self.endpoint_max_concurrent, int)
                                                         or self.endpoint_max_concurrent < 1):
            raise ConfigError(f"endpoint-max-concurrent must be an integer >= 1, got {self.endpoint_max_concurrent!r}")
        if len(set(self.base_urls)) != len(self.base_urls):
            raise ConfigError(f"--base-url names an endpoint twice: {', '.join(self.base_urls)}")
        if self.backend == "openai":
            if not self.base_url:
                raise ConfigError("the openai backend needs --base-url, for example http://127.0.0.1:8000/v1")
            for url in self.base_urls:
                check_url(url)
            if not self.model:
                raise ConfigError("the openai backend needs --model")
            host = urlparse(self.base_url).hostname or ""
            if host.endswith(KEYED_HOSTS) and not self.api_key():
                raise ConfigError(f"{self.base_url} needs {self.api_key_env} in the environment")
        elif self.base_url:
            raise ConfigError(f"--base-url is for the openai backend, not {self.backend}")
        if self.backend == "tinker" and not self.model:
            raise ConfigError("the tinker backend needs --model, a base model name such as meta-llama/Llama-3.2-1B")
        if self.backend == "local" and (self.model or self.tokenizer):
            raise ConfigError("--model and --tokenizer are for remote backends; use --model-path for a local GGUF")
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

    def api_key(self, url: str | None = None) -> str | None:
        """The key for `url` (default: the first base URL): from the environment, unless the key is pinned to
        other endpoints."""
        url = url or self.base_url
        if self.key_for is not None and (self.backend != "openai" or endpoint_of(url) not in self.key_for):
            return None
        return os.environ.get(self.api_key_env) or None

    def pinned_key(self) -> BackendSettings:
        """These settings with the key pinned to the endpoints they name now."""
        return dataclasses.replace(self, key_for=tuple(endpoint_of(url) for url in self.base_urls))


def endpoint_of(url: str | None) -> str:
    """Where a URL's requests go: scheme, host and port."""
    parsed = urlparse(url or "")
    return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or {'https': 443}.get(parsed.scheme, 80)}"


def check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"malformed base URL {url!r}: expected http(s)://host[:port]/v1")
    try:
        parsed.port  # noqa: B018 - urllib validates the port only when it is read
    except ValueError:
        raise ConfigError(f"malformed base URL {url!r}: bad port") from None


SEARCH_FIELDS = frozenset(f.name for f in dataclasses.fields(SearchSettings))
SEARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SearchSettings)}
BACKEND_FIELDS = frozenset(f.name for f in dataclasses.fields(BackendSettings))


def settings_from(values: dict) -> tuple[SearchSettings, BackendSettings]:
    """Validated settings from values by setting name (flags, a config file); others are ignored, missing ones
    keep their defaults. A default block longer than a given --max-tokens shrinks to it; a --block-tokens given
    longer is an error."""
    default_block = SearchSettings.block_tokens
    if "block_tokens" not in values and 1 <= values.get("max_tokens", default_block) < default_block:
        values = values | {"block_tokens": values["max_tokens"]}
    search = SearchSettings(**{k: v for k, v in values.items() if k in SEARCH_FIELDS}).validate()
    backend = backend_settings(values)
    check_answer_fits(search.max_tokens, backend)
    return search, backend


def check_answer_fits(max_tokens: int, backend: BackendSettings) -> None:
    """What can be known before a backend opens: an answer longer than the local model's sequences (a prompt of
    at least one token beside it). Prompts are measured when they are tokenised (engine.search)."""
    if backend.backend == "local" and max_tokens >= LOCAL_SEQUENCE_TOKENS:
        raise ConfigError(f"--max-tokens {max_tokens:,} does not fit in the local model's {LOCAL_SEQUENCE_TOKENS:,} "
                          f"tokens per sequence, prompt and answer together; use --max-tokens "
                          f"{LOCAL_SEQUENCE_TOKENS - 64:,} or less (a 64-token prompt)")


def backend_settings(values: dict) -> BackendSettings:
    """--base-url may come as a list (given more than once, or base-urls in TOML): the first, then the rest."""
    fields = {k: v for k, v in values.items() if k in BACKEND_FIELDS}
    urls = fields.get("base_url")
    if isinstance(urls, list):
        fields["base_url"], fields["more_base_urls"] = urls[0], tuple(urls[1:])
    return BackendSettings(**fields).validate()
