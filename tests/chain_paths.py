"""Every path a user can take to a backend, over one enumerable chain (tests/synthetic.py): in-process, over HTTP
through the OpenAI backend to the fault server in any logprob mode, and through the Tinker backend to its
stand-in. The exactness tests and `benchmarks/exactness.py` draw answers through each."""

from __future__ import annotations

import asyncio
from collections import Counter

from engine.backends.factory import open_sampler
from engine.backends.openai_compat import OpenAISampler
from engine.backends.tinker_sdk import TinkerSampler
from engine.results import SearchResult
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.fault_server import FaultConfig, ThreadedFaultServer
from tests.synthetic import ChainTokenizer, MarkovSampler
from tests.tinker_standin import LocalTinkerClient

LIMITS = BackendSettings(max_concurrent=64, max_retries=0)
SEARCHES_AT_ONCE = 16


async def collect(sampler, settings: SearchSettings, runs: int, limits: BackendSettings = LIMITS, *,
                  every_chain: bool = False) -> tuple[Counter, list[SearchResult]]:
    """The answers of `runs` searches (seeds 0..runs-1), several at once; with `every_chain`, every final chain
    state of each instead of its answer."""
    gate = asyncio.Semaphore(SEARCHES_AT_ONCE)

    async def one(seed: int) -> SearchResult:
        async with gate:
            return await run_search(settings.replace(seed=seed), sampler, limits)

    results = await asyncio.gather(*(one(seed) for seed in range(runs)))
    counts: Counter = Counter()
    for result in results:
        if result.error is None:
            counts.update(c.token_ids for c in (result.candidates if every_chain else [result.answer]))
    return counts, results


def in_process(model: MarkovSampler, settings: SearchSettings, runs: int, **options):
    return asyncio.run(collect(model, settings, runs, **options)), model


def served(model: MarkovSampler, config: FaultConfig, settings: SearchSettings, runs: int, **options):
    """Searches against `model` served over HTTP by the fault server, through the OpenAI backend."""
    config.chain = model
    with ThreadedFaultServer(config) as server:
        backend = BackendSettings(backend="openai", base_url=server.base_url, model="chain", max_concurrent=64,
                                  max_retries=0)
        sampler = OpenAISampler(base_url=server.base_url, model="chain", api_key=None, max_concurrent=64,
                                timeout=30, loaded_tokenizer=ChainTokenizer(model))

        async def go():
            await open_sampler(backend, sampler)
            try:
                return await collect(sampler, settings, runs, backend, **options)
            finally:
                await sampler.aclose()

        return asyncio.run(go()), sampler


def over_tinker(model: MarkovSampler, client: LocalTinkerClient, settings: SearchSettings, runs: int, **options):
    """Searches against `model` behind the Tinker stand-in `client`, through the Tinker backend."""
    backend = BackendSettings(backend="tinker", model="chain", max_concurrent=64, max_retries=0)
    sampler = TinkerSampler(model="chain", api_key=None, max_concurrent=64, timeout=30, sampling_client=client,
                            loaded_tokenizer=ChainTokenizer(model))

    async def go():
        await open_sampler(backend, sampler)
        return await collect(sampler, settings, runs, backend, **options)

    return asyncio.run(go()), sampler
