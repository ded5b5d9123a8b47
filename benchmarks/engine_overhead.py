"""Engine overhead per request: the request layer plus the search, on a backend that answers instantly.

    python -m benchmarks.engine_overhead

The backend does no work at all, so wall time / requests is what beamtui itself costs per request:
the cap, the timeout, retry bookkeeping, metrics, events, scoring and pruning. Each row is the best of five
runs of 200 blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from engine.events import Event
from engine.sampler import EXACT, Continuation, LogprobQuality, Message, SamplerDefaults, SampleRequest
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings


class InstantSampler(SamplerDefaults):
    name = "instant"
    chat_template = "none"
    model_name = "instant"

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        return EXACT

    async def start(self, send=None) -> None:
        pass

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        first = (request.seed or 0) * 64
        return [
            Continuation(tuple(range(first + i, first + i + request.max_tokens)), "x" * request.max_tokens,
                         (-0.5 - i / 100,) * request.max_tokens, "length")
            for i in range(request.n)
        ]

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text)))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "x" * len(token_ids)

    def render_chat(self, messages: Sequence[Message]) -> list[int]:
        return list(range(32))

    async def aclose(self) -> None:
        pass


async def measure(width: int, n: int, blocks: int) -> tuple[int, float]:
    settings = SearchSettings(prompt="p", beam_width=width, n_per_beam=n, block_tokens=4, max_tokens=4 * blocks,
                              seed=0)
    events: list[Event] = []
    started = time.perf_counter()
    result = await run_search(settings, InstantSampler(), BackendSettings(max_concurrent=64), events.append)
    return result.requests, time.perf_counter() - started


def main() -> None:
    asyncio.run(measure(4, 4, 5))  # warm up imports and caches
    print("| beam_width | n_per_beam | requests | wall_s | overhead per request |")
    print("|---:|---:|---:|---:|---:|")
    for width, n in ((4, 4), (16, 2), (64, 1)):
        # Best of five: the floor is beamtui's cost; anything above it is the machine's noise.
        requests, wall = min((asyncio.run(measure(width, n, 200)) for _ in range(5)), key=lambda rw: rw[1])
        print(f"| {width} | {n} | {requests} | {wall:.3f} | {wall / requests * 1000:.3f} ms |")


if __name__ == "__main__":
    main()
