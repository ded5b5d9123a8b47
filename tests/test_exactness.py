"""The power samplers are exact on every path a user can take: on a model whose distribution can be enumerated
(tests/synthetic.py), the answers of SMC and MCMC match p^alpha over whole answers, and plain sampling at
temperature 1/alpha does not.

The chain has four words and an end-of-sequence word, so answers have different lengths; alpha 2, answers of at
most 4 words: 340 answers, p^alpha computed exactly. Per-state normalisers differ, so token-level tempering lands
0.41 in total variation from p^alpha. The same chain is served in-process, over HTTP by the fault server in each
logprob mode real servers have (raw logprobs with top alternatives, processed logprobs, text-only prompts and
answers), and through the Tinker stand-in (raw and scaled logprobs).

With 1000 draws, an exact sampler's empirical distribution sits 0.063 from the truth on average (0.086 at the
98th percentile, by simulation of exact draws from this chain); the tests allow 0.11 and
require tempered sampling to be further than 0.25. Seeds are fixed, so every machine draws the same answers.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from engine.backends.factory import open_sampler
from engine.backends.tinker_sdk import TinkerSampler
from engine.errors import ConfigError
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.chain_paths import LIMITS, collect, over_tinker, served
from tests.fault_server import FaultConfig
from tests.synthetic import ChainTokenizer, MarkovSampler, power_distribution, tempered_distribution, total_variation
from tests.tinker_standin import LocalTinkerClient

ALPHA = 2.0
LENGTH = 4
DRAWS = 1000
EXACT_WITHIN = 0.11
BASE = SearchSettings(prompt="Name four colours.", alpha=ALPHA, max_tokens=LENGTH)
SMC = BASE.replace(strategy="smc", particles=16, block_tokens=2)
MCMC = BASE.replace(strategy="mcmc", chains=8, mcmc_steps=10, block_tokens=LENGTH)
# Multiple-try Metropolis, four tries a step: half the steps of plain MH reach the same distance (in-process, 4000
# draws: 0.038 at 4x10 and 0.047 at 4x5 against 0.044 for plain MH at 10 steps; an exact sampler's 0.032).
MTM = MCMC.replace(tries=4, mcmc_steps=5)
# Entropy cuts (arXiv 2605.30327): positions drawn where the chain's entropy rises, each answer's own cut
# probability in its weight. In-process, 1000 draws: 0.058 (plain MH, the answer), 0.076 (four tries, every
# chain); with uniform cuts' correction in place of the entropy cut's own, 0.146 and 0.121.
ENTROPY_MCMC = MCMC.replace(cut="entropy")
ENTROPY_MTM = MTM.replace(cut="entropy")
# Scalable power sampling at its most faithful here: every word a candidate, one decision per token, rollouts to
# the end of the answer. An approximation still (8 rollouts a candidate); at 1000 draws it lands 0.06-0.07 from
# p^alpha in-process, within an exact sampler's noise. Over each remote path 500 draws, whose bound 0.14 is the
# 99.8th percentile of exact draws' distance (0.087 on average, by simulation).
SPS = BASE.replace(strategy="sps", top_k=5, rollouts=8, block_tokens=1, horizon=LENGTH)
SPS_DRAWS, SPS_WITHIN = 500, 0.14  # also entropy-cut MH over HTTP
# Over HTTP, one block: one request a search instead of about fifteen (the SDK's httpx costs ~4 ms a request on
# loopback), which keeps what HTTP can get wrong (log p and log q as the server reports them) under test; blocks
# and resampling are backend-independent and tested in-process and through Tinker.
SMC_ONE_BLOCK = BASE.replace(strategy="smc", particles=16, block_tokens=LENGTH)

# State 0 spreads its next word evenly; state 1 almost always says "green"; "." ends the answer.
WORDS = ("red", "blue", "green", "gold", ".")
START = (0.5, 0.4, 0.05, 0.05, 0.0)
TRANSITIONS = (
    (0.2, 0.2, 0.2, 0.2, 0.2),
    (0.02, 0.02, 0.86, 0.05, 0.05),
    (0.25, 0.35, 0.15, 0.1, 0.15),
    (0.35, 0.15, 0.15, 0.15, 0.2),
    START,  # never used: "." ends the answer
)


def chain() -> MarkovSampler:
    return MarkovSampler(START, TRANSITIONS, words=WORDS, eos=WORDS.index("."))


def exact() -> dict:
    return power_distribution(chain(), ALPHA, LENGTH)


def test_the_chain_makes_tempered_sampling_differ_from_the_power_target():
    tempered = tempered_distribution(chain(), 1 / ALPHA, LENGTH)
    assert sum(tempered.values()) == pytest.approx(1)
    assert total_variation({k: v * 1e9 for k, v in tempered.items()}, exact()) > 0.3


def test_plain_sampling_at_one_over_alpha_does_not_match_p_alpha():
    counts, _ = asyncio.run(collect(chain(), BASE.replace(strategy="sample"), DRAWS))
    assert total_variation(counts, exact()) > 0.25


def test_smc_answers_are_draws_from_p_alpha_in_process():
    counts, results = asyncio.run(collect(chain(), SMC, DRAWS))
    assert sum(counts.values()) == DRAWS and not any(r.approximate for r in results)
    assert total_variation(counts, exact()) < EXACT_WITHIN


def test_mcmc_answers_are_draws_from_p_alpha_in_process():
    """The answer itself (a chain chosen uniformly), not every chain: 1000 searches."""
    counts, _ = asyncio.run(collect(chain(), MCMC, DRAWS))
    assert total_variation(counts, exact()) < EXACT_WITHIN


def test_multiple_try_mcmc_answers_are_draws_from_p_alpha_in_process():
    """Every chain's final state, as over HTTP: 125 searches of eight chains (the answer's own choice of chain is
    the plain sampler's, tested above)."""
    counts, results = asyncio.run(collect(chain(), MTM, DRAWS // MTM.chains, every_chain=True))
    assert all(r.stats["tries"] == 4 for r in results)
    assert total_variation(counts, exact()) < EXACT_WITHIN


def test_entropy_cut_mcmc_answers_are_draws_from_p_alpha_in_process():
    """Every chain's final state (125 searches of eight independent chains), plain and multiple-try."""
    counts, results = asyncio.run(collect(chain(), ENTROPY_MCMC, DRAWS // ENTROPY_MCMC.chains, every_chain=True))
    assert all(r.stats["cut"] == "entropy" and r.stats["entropies"] == "exact" for r in results)
    assert total_variation(counts, exact()) < EXACT_WITHIN
    counts, _ = asyncio.run(collect(chain(), ENTROPY_MTM, DRAWS // ENTROPY_MTM.chains, every_chain=True))
    assert total_variation(counts, exact()) < EXACT_WITHIN


def test_sps_with_every_token_a_candidate_lands_near_p_alpha_and_with_two_far_from_it():
    counts, results = asyncio.run(collect(chain(), SPS, DRAWS))
    assert all(r.stats["draw"] == "approximate" and r.stats["decisions"] >= 1 for r in results)
    assert total_variation(counts, exact()) < EXACT_WITHIN
    counts, _ = asyncio.run(collect(chain(), SPS.replace(top_k=2), DRAWS))
    assert total_variation(counts, exact()) > 0.25


def test_entropy_cuts_without_their_own_reverse_cut_term_leave_p_alpha(monkeypatch):
    """The Hastings term of the reverse cut is what keeps entropy cuts exact: weighed with uniform cuts' term
    instead (1/length), the same draws land outside the bound."""
    from engine.strategies.mcmc import MetropolisHastings

    monkeypatch.setattr(MetropolisHastings, "log_cut",
                        staticmethod(lambda search, length, entropies, position: -math.log(length)))
    counts, _ = asyncio.run(collect(chain(), ENTROPY_MCMC, DRAWS))  # the answers of 1,000 searches: 0.146 away
    assert total_variation(counts, exact()) > EXACT_WITHIN


def test_multiple_try_mcmc_with_few_steps_beats_plain_mcmc_with_as_few():
    """Three steps: plain MH is still far from p^alpha (0.18), four tries a step are near it (0.09)."""
    plain, _ = asyncio.run(collect(chain(), MCMC.replace(mcmc_steps=3), DRAWS // 8, every_chain=True))
    tried, _ = asyncio.run(collect(chain(), MTM.replace(mcmc_steps=3), DRAWS // 8, every_chain=True))
    assert total_variation(tried, exact()) < total_variation(plain, exact()) - 0.05


def test_best_output_is_the_mode_seeking_choice_and_far_from_p_alpha():
    counts, results = asyncio.run(collect(chain(), SMC.replace(output="best"), 300))
    for result in results:
        assert result.answer.score == max(c.score for c in result.candidates)
    assert total_variation(counts, exact()) > 0.3


# (id, fault server config): each mode of logprobs real OpenAI-compatible servers have.
HTTP_PATHS = [
    ("ids-raw-top20", dict(logprobs_mode="raw", top_logprobs_cap=20)),  # vLLM's default
    ("ids-processed", dict(logprobs_mode="processed")),  # vLLM with logprobs-mode processed_logprobs
    ("text-raw-top20", dict(logprobs_mode="raw", token_prompts=False, top_logprobs_cap=20)),  # text only
]


# Plain MH is multiple-try Metropolis with one try (one code path): over HTTP plain MH runs in vLLM's default mode,
# and four tries (one request of n = 7 a step, half the steps) in every mode.
HTTP_RUNS = [(SMC_ONE_BLOCK, config) for _, config in HTTP_PATHS] + [(MCMC, HTTP_PATHS[0][1])] + [
    (MTM, config) for _, config in HTTP_PATHS]
HTTP_IDS = [f"smc-{name}" for name, _ in HTTP_PATHS] + [f"mcmc-{HTTP_PATHS[0][0]}"] + [
    f"mtm-{name}" for name, _ in HTTP_PATHS]


@pytest.mark.parametrize(("settings", "mode"), HTTP_RUNS, ids=HTTP_IDS)
def test_power_samplers_are_exact_over_http(mode, settings):
    every_chain = settings.strategy == "mcmc"  # eight independent chains a search: 125 searches, 1000 draws
    runs = DRAWS // settings.chains if every_chain else DRAWS
    (counts, results), sampler = served(chain(), FaultConfig(**mode), settings, runs, every_chain=every_chain)
    assert sampler.processed == (mode["logprobs_mode"] == "processed")
    assert sampler.token_prompts == mode.get("token_prompts", True)
    assert sum(counts.values()) == DRAWS
    assert total_variation(counts, exact()) < EXACT_WITHIN


@pytest.mark.parametrize("mode", [config for _, config in HTTP_PATHS], ids=[name for name, _ in HTTP_PATHS])
def test_entropy_cut_mcmc_is_exact_over_http(mode):
    """Entropies estimated from the server's top alternatives: 500 draws (every chain of 63 searches), within the
    bound of 500 exact draws (SPS_WITHIN)."""
    runs = -(-SPS_DRAWS // ENTROPY_MTM.chains)
    (counts, results), _ = served(chain(), FaultConfig(**mode), ENTROPY_MTM, runs, every_chain=True)
    assert all(r.stats["entropies"] == "estimated from top alternatives" for r in results)
    assert total_variation(counts, exact()) < SPS_WITHIN


@pytest.mark.parametrize("mode", [config for _, config in HTTP_PATHS], ids=[name for name, _ in HTTP_PATHS])
def test_sps_lands_as_near_p_alpha_over_http(mode):
    """Candidates come from the server's top alternatives: by id, or (text-only servers) by their strings."""
    (counts, results), _ = served(chain(), FaultConfig(**mode), SPS, SPS_DRAWS)
    assert not any(r.error for r in results)
    assert total_variation(counts, exact()) < SPS_WITHIN


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "scaled"])
def test_sps_lands_as_near_p_alpha_through_tinker(scaled):
    (counts, _), _ = over_tinker(chain(), LocalTinkerClient(chain(), scaled=scaled), SPS, SPS_DRAWS)
    assert total_variation(counts, exact()) < SPS_WITHIN


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "scaled"])
@pytest.mark.parametrize("settings", [SMC, MCMC, MTM, ENTROPY_MTM], ids=["smc", "mcmc", "mtm", "entropy-mtm"])
def test_power_samplers_are_exact_through_tinker(scaled, settings):
    every_chain = settings.strategy == "mcmc"
    runs = DRAWS // settings.chains if every_chain else DRAWS
    (counts, _), sampler = over_tinker(chain(), LocalTinkerClient(chain(), scaled=scaled), settings, runs,
                                             every_chain=every_chain)
    assert sampler.scaled is scaled
    assert total_variation(counts, exact()) < EXACT_WITHIN


def test_a_server_with_raw_logprobs_and_no_alternatives_is_refused_for_mcmc():
    with pytest.raises(ConfigError, match="mcmc needs the proposal's log-probabilities"):
        served(chain(), FaultConfig(top_logprobs=False), MCMC, 1)


def test_a_server_with_processed_logprobs_and_no_alternatives_is_refused():
    """It gives log q but no way to log p: it looks like a raw server whose log q cannot be had."""
    with pytest.raises(ConfigError, match="needs the proposal's log-probabilities"):
        served(chain(), FaultConfig(logprobs_mode="processed", top_logprobs=False), SMC, 1)


class NoTopkTinker(LocalTinkerClient):
    """A service that ignores topk_sample_logprobs: raw logprobs and nothing to estimate log q from."""

    async def sample(self, prompt, num_samples, sampling_params, topk_sample_logprobs=0):
        return await super().sample(prompt, num_samples, sampling_params, 0)


@pytest.mark.parametrize("settings", [SMC, MCMC], ids=["smc", "mcmc"])
def test_a_backend_that_returns_no_log_q_fails_the_search_with_one_line(settings):
    model = chain()
    sampler = TinkerSampler(model="chain", api_key=None, max_concurrent=8, timeout=30,
                            sampling_client=NoTopkTinker(model, scaled=False), loaded_tokenizer=ChainTokenizer(model))

    async def go():
        await open_sampler(BackendSettings(backend="tinker", model="chain"), sampler)
        return await run_search(settings.replace(seed=1), sampler, LIMITS)

    result = asyncio.run(go())
    assert result.answer is None and result.stop_reason == "error"
    assert result.error == (f"{settings.strategy} needs log q of every proposed token, and the tinker backend "
                            "(chain) returned no log q at temperature 0.5")


def test_alternatives_cut_to_two_make_an_approximate_run():
    """Top-2 alternatives out of five words: log q is an estimate, and the run says so."""
    (_, results), _ = served(chain(), FaultConfig(top_logprobs_cap=2), SMC, 4)
    assert all(r.approximate for r in results)


def test_a_text_server_that_does_not_score_the_end_token_makes_an_approximate_run():
    (_, results), _ = served(chain(), FaultConfig(token_prompts=False, scores_eos=False, top_logprobs_cap=20), SMC, 20)
    assert any(r.approximate for r in results)
    assert all(r.approximate for r in results if any(c.finished for c in r.candidates))


@pytest.mark.parametrize(("eos", "exact"), [({"eos_piece": ""}, True), ({"eos_piece": "<|end|>"}, True),
                                           ({"eos_piece": "token_id"}, True), ({"scores_eos": False}, False)],
                         ids=["empty string", "special string", "token id", "absent"])
@pytest.mark.parametrize("strategy", ["smc", "mcmc"])
def test_every_end_token_convention_of_a_text_server_keeps_searches_alive(eos, exact, strategy):
    """However a text-only server names the end-of-sequence token in its logprobs while leaving it out of the
    text, mcmc and smc run to the end: exact where every token was scored, labelled approximate where the end
    token was not, never failing in the middle for want of log q."""
    settings = BASE.replace(strategy=strategy, particles=4, chains=2, mcmc_steps=2, block_tokens=2, temperature=1.0)
    (_, results), _ = served(chain(), FaultConfig(token_prompts=False, top_logprobs_cap=20, **eos), settings, 12)
    assert all(r.error is None for r in results), {r.error for r in results}
    ended = [r for r in results if any(c.finished for c in r.candidates)]
    assert ended and all(r.approximate != exact for r in ended)


def test_a_text_server_that_scores_every_token_keeps_the_run_exact():
    (_, results), _ = served(chain(), FaultConfig(token_prompts=False, top_logprobs_cap=20), BASE.replace(
        strategy="smc", particles=4, block_tokens=2, temperature=1.0), 20)
    assert any(c.finished for r in results for c in r.candidates)
    assert not any(r.approximate for r in results)
