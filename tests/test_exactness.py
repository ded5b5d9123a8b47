"""The power samplers are exact: on a model whose distribution can be enumerated (tests/synthetic.py), the answers
of SMC and MCMC match p^alpha over whole answers, and plain sampling at temperature 1/alpha does not.

Alpha 2, answers of 4 words over a 4-word vocabulary: 256 answers, p^alpha computed exactly. The Markov chain's
per-state normalisers differ, so token-level tempering lands 0.33 in total variation from p^alpha. With 1000
draws, an exact sampler's empirical distribution sits 0.065 from the truth on average (0.083 at the 98th
percentile, by simulation); the tests allow 0.11, and require tempered sampling to be further than 0.25.
Seeds are fixed, so every machine draws the same answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.synthetic import MarkovSampler, power_distribution, tempered_distribution, total_variation

ALPHA = 2.0
LENGTH = 4
DRAWS = 1000
EXACT_WITHIN = 0.11
BASE = SearchSettings(prompt="Name four colours.", alpha=ALPHA, max_tokens=LENGTH)
LIMITS = BackendSettings(max_concurrent=64, max_retries=0)


def draws(settings: SearchSettings, runs: int, *, every_chain: bool = False) -> Counter:
    sampler = MarkovSampler()

    async def collect() -> Counter:
        counts: Counter = Counter()
        for seed in range(runs):
            result = await run_search(settings.replace(seed=seed), sampler, LIMITS)
            assert result.error is None
            answers = result.candidates if every_chain else [result.answer]
            counts.update(answer.token_ids for answer in answers)
        return counts

    return asyncio.run(collect())


def exact() -> dict:
    return power_distribution(MarkovSampler(), ALPHA, LENGTH)


def test_the_chain_makes_tempered_sampling_differ_from_the_power_target():
    sampler = MarkovSampler()
    tempered = tempered_distribution(sampler, 1 / ALPHA, LENGTH)
    assert total_variation({k: v * 1e9 for k, v in tempered.items()}, exact()) > 0.3


def test_plain_sampling_at_one_over_alpha_does_not_match_p_alpha():
    counts = draws(BASE.replace(strategy="sample"), DRAWS)
    assert total_variation(counts, exact()) > 0.25


def test_smc_draws_from_p_alpha():
    settings = BASE.replace(strategy="smc", particles=16, block_tokens=1, smc_output="sample")
    counts = draws(settings, DRAWS)
    assert sum(counts.values()) == DRAWS
    assert total_variation(counts, exact()) < EXACT_WITHIN


def test_mcmc_draws_from_p_alpha():
    """Each chain is an independent Metropolis-Hastings sampler, so 8 chains a run for 125 runs are 1000 draws;
    the run's answer is its best chain, which is what --chains exists for."""
    settings = BASE.replace(strategy="mcmc", chains=8, mcmc_steps=20, block_tokens=2)
    counts = draws(settings, DRAWS // 8, every_chain=True)
    assert sum(counts.values()) == DRAWS
    assert total_variation(counts, exact()) < EXACT_WITHIN
