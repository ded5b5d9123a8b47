"""Each strategy's wall time on a server that behaves like a GPU: what the search itself costs beyond its requests.

    python -m benchmarks.gpu_like [--repeats 3] [--max-tokens 512] [--block-tokens 64]     (about 15 minutes)

The server (tests/fault_server.py on 127.0.0.1) answers each request after 50 ms to first token plus 5 ms a token
of its longest choice, and requests in flight together do not slow each other, as batched decoding on a GPU
does; answers run to max tokens. For each strategy it prints the wall time, its ideal (the sum over its rounds of
the slowest request, as measured), their ratio, and the multiples of greedy's wall time next to the published
figures: Power-SMC (arXiv 2602.10273) 1.4-3.3x the latency of plain decoding, MH power sampling 16-28x.

Then, on the enumerable toy chain of tests/test_exactness.py (in-process), the distance to p^alpha of plain MH
and of multiple-try MH against the rounds each took: what the tries buy per round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections import defaultdict

from engine.backends.factory import open_sampler
from engine.events import RequestFinished
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.chain_paths import collect
from tests.fault_server import FaultConfig, ThreadedFaultServer
from tests.synthetic import total_variation

FIRST_TOKEN_S = 0.05
TOKEN_S = 0.005
SPECS = ("greedy", "best-of-n:8", "vote:8", "smc:8", "beam:4x4", "mcmc:2x5", "mcmc:2x10", "mcmc:2x3x4",
         "mcmc:2x5x4")
PUBLISHED = "published: Power-SMC x1.4-3.3 of plain decoding; MH power sampling x16-28"


async def timed(settings: SearchSettings, backend: BackendSettings, sampler) -> tuple[float, float, int]:
    """One search: its wall time, its ideal (per round, the slowest request), its rounds. (The synthetic server's
    answers are not one model's, so acceptance rates here mean nothing; the toy chain below has them.)"""
    slowest: dict[int, float] = defaultdict(float)

    def watch(event) -> None:
        if isinstance(event, RequestFinished):
            slowest[event.round] = max(slowest[event.round], event.latency_s)

    result = await run_search(settings, sampler, backend, watch)
    if result.error:
        raise SystemExit(f"{settings.spec}: {result.error}")
    return result.wall_s, sum(slowest.values()), len(result.rounds)


async def strategies(args) -> None:
    config = FaultConfig(latency=FIRST_TOKEN_S, token_s=TOKEN_S, streams=False)
    with ThreadedFaultServer(config) as server:
        backend = BackendSettings(backend="openai", base_url=server.base_url, model="synthetic",
                                  tokenizer="embedded", max_concurrent=64, max_retries=0)
        sampler = await open_sampler(backend)
        base = SearchSettings(prompt="Why is the sky blue?", max_tokens=args.max_tokens,
                              block_tokens=args.block_tokens, seed=1)
        rows = {}
        try:
            for spec in ("greedy", *(s for s in args.specs.split(",") if s != "greedy")):
                runs = [await timed(base.with_spec(spec).replace(seed=seed), backend, sampler)
                        for seed in range(args.repeats)]
                rows[spec] = runs
        finally:
            await sampler.aclose()
    greedy = statistics.median(run[0] for run in rows["greedy"])
    print(f"GPU-like loopback server: {FIRST_TOKEN_S * 1000:.0f} ms to first token + {TOKEN_S * 1000:.0f} ms a token, "
          f"no slowdown in flight; {args.max_tokens} tokens in blocks of {args.block_tokens}; median of "
          f"{args.repeats}\n")
    print("| strategy | rounds | wall s | ideal s | wall / ideal | x greedy | ideal x greedy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for spec, runs in rows.items():
        wall, ideal = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"| {spec} | {runs[0][2]} | {wall:.2f} | {ideal:.2f} | {wall / ideal:.3f} | x{wall / greedy:.2f} | "
              f"x{ideal / greedy:.2f} |", flush=True)
    print(f"\n{PUBLISHED}\n")


async def mixing(draws: int) -> None:
    from tests.test_exactness import MCMC, chain, exact

    truth = exact()
    print(f"toy chain (tests/test_exactness.py), one block, 8 chains a search, every chain's final state, "
          f"{draws} draws; an exact sampler's own noise at this size is about {0.063 * (1000 / draws) ** 0.5:.3f}\n")
    print("| mcmc | tries | steps | rounds | TV to p^alpha | acceptance |")
    print("|---|---:|---:|---:|---:|---:|")
    for tries, steps in ((1, 2), (1, 3), (1, 5), (1, 10), (4, 1), (4, 2), (4, 3), (4, 5)):
        settings = MCMC.replace(tries=tries, mcmc_steps=steps)
        counts, results = await collect(chain(), settings, draws // settings.chains, every_chain=True)
        proposed = sum(r.stats["proposals"] for r in results)
        accepted = sum(r.stats["accepted"] for r in results)
        print(f"| {settings.spec} | {tries} | {steps} | {len(results[0].rounds)} | "
              f"{total_variation(counts, truth):.3f} | {accepted / proposed:.0%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--block-tokens", type=int, default=64)
    parser.add_argument("--draws", type=int, default=4000, help="toy-chain draws per row; 0: no toy-chain table")
    parser.add_argument("--specs", default=",".join(SPECS), help="the strategies to time (greedy always)")
    args = parser.parse_args()
    asyncio.run(strategies(args))
    if args.draws:
        asyncio.run(mixing(args.draws))


if __name__ == "__main__":
    main()
