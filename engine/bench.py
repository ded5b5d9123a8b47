"""Sequential against parallel: the same seeded search run both ways, per beam width."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from engine.backends.base import Sampler
from engine.errors import RunFailed
from engine.events import EventSink, discard
from engine.search import SearchResult, run_search
from engine.settings import BackendSettings, SearchSettings


@dataclass(frozen=True)
class BenchRow:
    beam_width: int
    requests: int
    seq_s: float
    par_s: float
    speedup: float
    ideal: float
    efficiency: float
    same_best: bool  # both modes chose the same best beam, as a seeded deterministic backend must

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def ideal_speedup(requests_per_block: list[int], max_concurrent: int) -> float:
    """What parallel could gain at best: each block takes ceil(requests / cap) request-times instead of requests."""
    rounds = sum(math.ceil(count / max_concurrent) for count in requests_per_block)
    return sum(requests_per_block) / rounds if rounds else 1.0


def bench_row(width: int, sequential: SearchResult, parallel: SearchResult, max_concurrent: int) -> BenchRow:
    speedup = sequential.wall_s / parallel.wall_s if parallel.wall_s else 0.0
    ideal = ideal_speedup([block.requests for block in parallel.blocks], max_concurrent)
    seq_best, par_best = sequential.best, parallel.best
    return BenchRow(
        beam_width=width,
        requests=parallel.requests,
        seq_s=sequential.wall_s,
        par_s=parallel.wall_s,
        speedup=speedup,
        ideal=ideal,
        efficiency=speedup / ideal if ideal else 0.0,
        same_best=bool(seq_best and par_best and seq_best.token_ids == par_best.token_ids),
    )


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
    await run_search(settings.replace(beam_width=min(widths), seed=seed, mode="sequential"), sampler, limits)
    rows = []
    for width in widths:
        base = settings.replace(beam_width=width, seed=seed)
        sequential = await run_search(base.replace(mode="sequential"), sampler, limits, emit)
        parallel = await run_search(base.replace(mode="parallel"), sampler, limits, emit)
        for result in (sequential, parallel):
            if result.error:
                raise RunFailed(f"beam width {width}, {result.settings.mode}: {result.error}")
        row = bench_row(width, sequential, parallel, limits.max_concurrent)
        on_row(row)
        rows.append(row)
    return rows
