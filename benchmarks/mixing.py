"""How fast Metropolis-Hastings reaches p^alpha with uniform cuts and with entropy cuts, plain and multiple-try.

    python -m benchmarks.mixing [--draws 2000]          (from the repository root; about 5 minutes on 2 cores)

Two enumerable chains, in-process, every search one block (the whole answer), 8 independent chains a search
and every chain's final state counted (draws / 8 searches a point):

- "decision": one consequential choice, then detail. The first word is "proof" (p 0.3) or "guess" (0.7);
  after "proof" the answer runs on "step" with p 0.95 a word, after "guess" it wanders between "maybe" and
  "perhaps" (0.5 each). p^alpha (alpha 4, 8 words) puts nearly all its mass on the "proof" answers, while
  proposals at 1/alpha start on "guess" nearly always; a chain reaches the mode only by cutting at the first
  word. Uniform cuts pick it 1 time in 8; entropy cuts, where the entropy rises most, far more often (the
  script prints the figures).
- "tests": the four-word chain of tests/test_exactness.py (alpha 2, 4 words), whose entropy varies a little
  at every position: there entropy cuts have no decision to find and should mix about as uniform ones do.

Each row is the total variation distance from p^alpha after that many MH steps (0: the proposal alone); each
table's heading gives an exact sampler's own distance at as many draws (the mean over 200 simulated sets).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from collections import Counter

from engine.scoring import cut_log_probabilities
from engine.settings import SearchSettings
from tests.chain_paths import collect
from tests.synthetic import PROMPT_TOKEN, MarkovSampler, power_distribution, total_variation

STEPS = (0, 1, 2, 4, 8, 16, 32)
WORDS = ("proof", "guess", "step", "maybe", "perhaps", ".")
START = (0.3, 0.7, 0.0, 0.0, 0.0, 0.0)
TRANSITIONS = (
    (0.0, 0.0, 0.95, 0.0, 0.0, 0.05),  # proof: then steps
    (0.0, 0.0, 0.0, 0.5, 0.5, 0.0),  # guess: then maybe or perhaps
    (0.0, 0.0, 0.95, 0.0, 0.0, 0.05),  # step
    (0.0, 0.0, 0.0, 0.5, 0.5, 0.0),  # maybe
    (0.0, 0.0, 0.0, 0.5, 0.5, 0.0),  # perhaps
    START,  # never used: "." ends the answer
)
DECISION = SearchSettings(prompt="Prove it.", alpha=4.0, max_tokens=8, block_tokens=8, strategy="mcmc", chains=8)


def decision_chain() -> MarkovSampler:
    return MarkovSampler(START, TRANSITIONS, words=WORDS, eos=WORDS.index("."))


def exact_noise(truth: dict, draws: int, sets: int = 200) -> float:
    """The mean distance from p^alpha of `draws` exact draws from it."""
    rng = random.Random(0)
    answers, weights = list(truth), list(truth.values())
    return statistics.fmean(total_variation(Counter(rng.choices(answers, weights, k=draws)), truth)
                            for _ in range(sets))


async def table(name: str, model, base: SearchSettings, truth: dict, draws: int) -> None:
    print(f"\n{name}: TV to p^alpha after n MH steps ({draws} draws a point; exact draws land "
          f"{exact_noise(truth, draws):.3f} away)\n")
    print("| cut | tries | " + " | ".join(f"{steps} steps" for steps in STEPS) + " |")
    print("|---|---:|" + "---:|" * len(STEPS))
    for cut in ("uniform", "entropy"):
        for tries in (1, 4):
            cells = []
            for steps in STEPS:
                settings = base.replace(cut=cut, tries=tries, mcmc_steps=steps)
                counts, _ = await collect(model(), settings, draws // settings.chains, every_chain=True)
                cells.append(f"{total_variation(counts, truth):.3f}")
            print(f"| {cut} | {tries} | " + " | ".join(cells) + " |", flush=True)


async def main(draws: int) -> None:
    from tests.test_exactness import MCMC, chain, exact

    started = time.perf_counter()
    truth = power_distribution(decision_chain(), DECISION.alpha, DECISION.max_tokens)
    proof = sum(p for answer, p in truth.items() if answer[0] == WORDS.index("proof"))
    start_q = START[0] ** DECISION.alpha / sum(p ** DECISION.alpha for p in START)
    guess = (WORDS.index("guess"),) + (WORDS.index("maybe"),) * 7
    sampler = decision_chain()
    entropies = [-sum(p * math.log(p) for p in sampler.next_probs(state) if p > 0)
                 for state in (PROMPT_TOKEN, *guess[:-1])]
    at_first = math.exp(cut_log_probabilities("entropy", len(guess), entropies)[0])
    print(f"decision chain: p^alpha puts {proof:.4f} of its mass on answers that start with 'proof'; proposals "
          f"at 1/alpha start with it {start_q:.3f} of the time; on a 'guess' answer an entropy cut falls on the "
          f"first word with probability {at_first:.3f}, a uniform one {1 / len(guess):.3f}")
    await table("decision chain (alpha 4, 8 words)", decision_chain, DECISION, truth, draws)
    await table("the tests' chain (alpha 2, 4 words)", chain, MCMC.replace(chains=8), exact(), draws)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    asyncio.run(main(parser.parse_args().draws))
