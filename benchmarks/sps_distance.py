"""How far scalable power sampling lands from p^alpha as its candidates and rollouts grow, beside smc and mcmc
spending about as many tokens.

    python -m benchmarks.sps_distance [--draws 2000]     (from the repository root; about 10 minutes on 2 cores)

On the enumerable chain of tests/test_exactness.py (four words and an end word, alpha 2, at most 4 words),
in-process. sps decides every token (block_tokens 1) with rollouts to the end of the answer, at K x M in 2x4,
4x8, all (5) x 8 and all x 32. For each, smc (blocks of 2 tokens) and mcmc (8 chains of one block, every chain's
final state) at the size whose tokens per draw come nearest: particles or MH steps chosen by a first, short run.
Each row: the distance from p^alpha over whole answers, requests and tokens per draw (a search's, divided by
the draws it gives: one for sps and smc, eight for mcmc), and an exact sampler's own distance at as many draws.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.mixing import exact_noise
from engine.settings import SearchSettings
from tests.chain_paths import collect
from tests.synthetic import total_variation

SIZES = ((2, 4), (4, 8), (5, 8), (5, 32))
PARTICLES = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
PROBE = 100  # draws of the short run that measures each comparator's tokens


async def measured(model, settings: SearchSettings, draws: int) -> tuple[float, float, float]:
    """(TV to p^alpha, requests per draw, tokens per draw) of `draws` draws of `settings`."""
    from tests.test_exactness import exact

    every_chain = settings.strategy == "mcmc"
    per_search = settings.chains if every_chain else 1
    counts, results = await collect(model, settings, max(1, draws // per_search), every_chain=every_chain)
    count = sum(counts.values())
    requests = sum(r.usage["requests"] for r in results) / count
    tokens = sum(r.usage["completion_tokens"] for r in results) / count
    return total_variation(counts, exact()), requests, tokens


async def nearest(model, family: list[SearchSettings], tokens: float) -> SearchSettings:
    """The member of `family` whose tokens per draw come nearest `tokens`, from a short run of each."""
    costs = [(abs((await measured(model, s, PROBE))[2] - tokens), s) for s in family]
    return min(costs, key=lambda pair: pair[0])[1]


async def main(draws: int) -> None:
    from tests.test_exactness import BASE, LENGTH, MCMC, SMC, chain, exact

    started = time.perf_counter()
    print(f"tests' chain, alpha {BASE.alpha}, at most {LENGTH} words; {draws} draws a row; exact draws land "
          f"{exact_noise(exact(), draws):.3f} from p^alpha on average\n")
    print("| sampler | TV to p^alpha | requests / draw | tokens / draw |")
    print("|---|---:|---:|---:|")
    for top_k, rollouts in SIZES:
        sps = BASE.replace(strategy="sps", top_k=top_k, rollouts=rollouts, block_tokens=1, horizon=LENGTH)
        tv, requests, tokens = await measured(chain(), sps, draws)
        label = f"sps:{'all' if top_k == 5 else top_k}x{rollouts}"
        print(f"| **{label}** | {tv:.3f} | {requests:.1f} | {tokens:.1f} |", flush=True)
        smc = await nearest(chain(), [SMC.replace(particles=p) for p in PARTICLES], tokens)
        mcmc = await nearest(chain(), [MCMC.replace(chains=8, mcmc_steps=s) for s in STEPS], tokens)
        for other in (smc, mcmc):
            tv, requests, other_tokens = await measured(chain(), other, draws)
            print(f"| {other.spec} | {tv:.3f} | {requests:.1f} | {other_tokens:.1f} |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    asyncio.run(main(parser.parse_args().draws))
