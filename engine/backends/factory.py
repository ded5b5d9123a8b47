"""Build the backend the settings name, and start it behind a retrying probe."""

from __future__ import annotations

import asyncio
import importlib

from engine.backends.tokenizers import Tokenizer
from engine.errors import ConfigError
from engine.request_layer import RequestLayer
from engine.sampler import Sampler
from engine.settings import BackendSettings

REMOTE_MODULES = {"openai": "engine.backends.openai_compat", "tinker": "engine.backends.tinker_sdk"}


def create_sampler(settings: BackendSettings, tokenizer: Tokenizer | None = None) -> Sampler:
    """The backend the settings name, not started. A remote backend given a loaded `tokenizer` uses it rather
    than loading its own."""
    settings.validate()
    if settings.backend == "local":
        from engine.backends.local.backend import LocalSampler

        layout = None if settings.weights == "auto" else settings.weights
        return LocalSampler(settings.model_path, latency=settings.latency, threads=settings.threads, layout=layout,
                            stall_timeout=settings.timeout, flash_attn=settings.flash_attn)
    if settings.backend == "openai":
        from engine.backends.openai_compat import OpenAISampler

        endpoints = [
            OpenAISampler(base_url=url, model=settings.model, api_key=settings.api_key(url),
                          max_concurrent=settings.endpoint_max_concurrent or settings.max_concurrent,
                          timeout=settings.timeout, api=settings.api, tokenizer=settings.tokenizer,
                          loaded_tokenizer=tokenizer)
            for url in settings.base_urls
        ]
        if len(endpoints) == 1 and settings.endpoint_max_concurrent is None:
            return endpoints[0]
        from engine.backends.endpoints import EndpointPool

        return EndpointPool(endpoints, endpoint_max_concurrent=settings.endpoint_max_concurrent,
                            timeout=settings.timeout, max_retries=settings.max_retries,
                            max_concurrent=settings.max_concurrent)
    if settings.backend == "tinker":
        from engine.backends.tinker_sdk import TinkerSampler

        return TinkerSampler(
            model=settings.model,
            api_key=settings.api_key(),
            max_concurrent=settings.max_concurrent,
            timeout=settings.timeout,
            tokenizer=settings.tokenizer,
            loaded_tokenizer=tokenizer,
            clients=settings.tinker_clients,
        )
    raise ConfigError(f"unknown backend {settings.backend!r}")


async def open_sampler(settings: BackendSettings, sampler: Sampler | None = None) -> Sampler:
    """Create (unless given) and start a backend, probing it through a retrying request layer.

    Raises ConfigError, with one line a user can act on, when the backend cannot do the job.
    """
    spec = settings.tokenizer or settings.model or ""
    if sampler is None and settings.backend != "local" and (spec == "embedded" or spec.endswith(".gguf")):
        # A local tokenizer loads on a thread while the SDK imports here: llama.cpp's vocabulary load runs in C
        # without the GIL, so the two overlap (the openai SDK's import alone is ~0.6 s on a slow core).
        from engine.backends.tokenizers import load_tokenizer

        settings.validate()
        loading = asyncio.get_running_loop().run_in_executor(None, load_tokenizer, spec)
        importlib.import_module(REMOTE_MODULES[settings.backend])  # the SDK's import, while the tokenizer loads
        sampler = create_sampler(settings, await loading)
    sampler = sampler or create_sampler(settings)
    try:
        await sampler.start(RequestLayer.for_backend(sampler, settings).send)
    except BaseException:
        await sampler.aclose()
        raise
    return sampler


async def check_backend(settings: BackendSettings) -> None:
    """Open and close the backend: a missing key or a dead endpoint raises ConfigError here, before a screen opens
    or a run starts."""
    sampler = await open_sampler(settings)
    await sampler.aclose()
