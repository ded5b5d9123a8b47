"""Sequential against parallel, measured: the same seeded search run both ways, per width of the strategy."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from engine.errors import RunFailed
from engine.events import EventSink, discard
from engine.results import SearchResult
from engine.sampler import Sampler
from engine.scoring import speedup
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings


@dataclass(frozen=True)
class BenchRow:
    strategy: str
    width: int
    requests: int
    tokens: int
    seq_s: float
    par_s: float
    speedup: float
    ideal: float
    efficiency: float
    same_answer: bool  # both modes chose the same answer, as a seeded deterministic backend must

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def ideal_speedup(requests_per_round: list[int], max_concurrent: int) -> float:
    """The best parallel can do when requests cost the same and do not slow each other (a latency-bound
    backend): each round takes ceil(requests / cap) request-times instead of `requests`."""
    rounds = sum(math.ceil(count / max_concurrent) for count in requests_per_round)
    return sum(requests_per_round) / rounds if rounds else 1.0


def bench_row(sequential: SearchResult, parallel: SearchResult, max_concurrent: int) -> BenchRow:
    times = speedup(sequential.wall_s, parallel.wall_s) or 0.0
    ideal = ideal_speedup([r.requests for r in parallel.rounds], max_concurrent)
    seq_answer, par_answer = sequential.answer, parallel.answer
    return BenchRow(
        strategy=parallel.settings.strategy,
        width=parallel.settings.width,
        requests=parallel.requests,
        tokens=parallel.usage["completion_tokens"],
        seq_s=sequential.wall_s,
        par_s=parallel.wall_s,
        speedup=times,
        ideal=ideal,
        efficiency=times / ideal if ideal else 0.0,
        same_answer=bool(seq_answer and par_answer and seq_answer.token_ids == par_answer.token_ids),
    )


async def run_pair(settings: SearchSettings, limits: BackendSettings, sampler: Sampler,
                   emit: EventSink = discard) -> BenchRow:
    """The same search, seed included, sequentially and then in parallel."""
    sequential = await run_search(settings.replace(mode="sequential"), sampler, limits, emit)
    parallel = await run_search(settings.replace(mode="parallel"), sampler, limits, emit)
    for result in (sequential, parallel):
        if result.error:
            raise RunFailed(f"{settings.strategy} width {settings.width}, {result.settings.mode}: {result.error}")
    return bench_row(sequential, parallel, limits.max_concurrent)


async def run_bench(
    settings: SearchSettings,
    limits: BackendSettings,
    sampler: Sampler,
    widths: list[int],
    emit: EventSink = discard,
    on_row=lambda row: None,
) -> list[BenchRow]:
    """For each width, run the search sequentially then in parallel with one seed; return a row per width."""
    seed = settings.seed if settings.seed is not None else random.SystemRandom().getrandbits(31)
    # Warm up first (model pages, connections, the prompt's cached prefix) so no row pays for it.
    await run_search(settings.with_width(min(widths)).replace(seed=seed, mode="sequential"), sampler, limits)
    rows = []
    for width in widths:
        row = await run_pair(settings.with_width(width).replace(seed=seed), limits, sampler, emit)
        on_row(row)
        rows.append(row)
    return rows
