"""How close mcmc and smc come to p^alpha through every backend path, on a chain that is not the tests' one.

    python -m benchmarks.exactness            (from the repository root; about 15 minutes on 2 cores)
    python -m benchmarks.exactness --noise    (only how far an exact sampler's 2,000 draws land, by simulation)

The chain (below) has four weather words and an end-of-sequence word; answers of at most 5 words, alpha 3: 1,364
answers, p^alpha enumerated. Its per-state normalisers differ, so tempering each token at 1/alpha lands 0.81
in total variation from p^alpha. Each path draws 2,000 answers: in-process; over HTTP through the OpenAI backend
to the fault server with raw logprobs and top-20 alternatives (vLLM's default), processed logprobs, text-only
prompts and answers, and top-2 alternatives only (log q truly estimated: the chain has five words); through the
Tinker backend to its stand-in with raw and scaled logprobs. smc answers with one particle drawn by weight (2,000
searches); mcmc counts the final state of each of 8 independent chains (250 searches; its answer is one of them
chosen uniformly, the same law).
"""

from __future__ import annotations

import argparse
import random
import time

from engine.settings import SearchSettings
from tests.chain_paths import in_process, over_tinker, served
from tests.fault_server import FaultConfig
from tests.synthetic import MarkovSampler, power_distribution, tempered_distribution, total_variation
from tests.tinker_standin import LocalTinkerClient

ALPHA = 3.0
LENGTH = 5
DRAWS = 2000
WORDS = ("sun", "rain", "wind", "snow", "end")
START = (0.5, 0.3, 0.15, 0.05, 0.0)
TRANSITIONS = (
    (0.2, 0.2, 0.2, 0.2, 0.2),
    (0.05, 0.1, 0.6, 0.1, 0.15),
    (0.4, 0.3, 0.1, 0.1, 0.1),
    (0.3, 0.2, 0.2, 0.2, 0.1),
    START,  # never used: "end" ends the answer
)
BASE = SearchSettings(prompt="What will the weather be?", alpha=ALPHA, max_tokens=LENGTH)
STRATEGIES = {
    "sample at 1/alpha": (BASE.replace(strategy="sample"), False),
    "smc:64 (sample)": (BASE.replace(strategy="smc", particles=64, block_tokens=LENGTH), False),
    "mcmc:8x50 (every chain)": (BASE.replace(strategy="mcmc", chains=8, mcmc_steps=50, block_tokens=LENGTH), True),
}


def chain() -> MarkovSampler:
    return MarkovSampler(START, TRANSITIONS, words=WORDS, eos=WORDS.index("end"))


PATHS = {
    "local (in-process)": lambda s, runs, ev: in_process(chain(), s, runs, every_chain=ev),
    "openai ids, raw + top-20": lambda s, runs, ev: served(chain(), FaultConfig(top_logprobs_cap=20), s, runs,
                                                           every_chain=ev),
    "openai ids, processed": lambda s, runs, ev: served(chain(), FaultConfig(logprobs_mode="processed"), s, runs,
                                                        every_chain=ev),
    "openai text, raw + top-20": lambda s, runs, ev: served(
        chain(), FaultConfig(token_prompts=False, top_logprobs_cap=20), s, runs, every_chain=ev),
    "openai ids, raw + top-2": lambda s, runs, ev: served(chain(), FaultConfig(top_logprobs_cap=2), s, runs,
                                                          every_chain=ev),
    "tinker, raw": lambda s, runs, ev: over_tinker(chain(), LocalTinkerClient(chain(), scaled=False), s, runs,
                                                   every_chain=ev),
    "tinker, scaled": lambda s, runs, ev: over_tinker(chain(), LocalTinkerClient(chain(), scaled=True), s, runs,
                                                      every_chain=ev),
}


def noise(exact: dict, draws: int, repeats: int = 200) -> tuple[float, float]:
    """Mean and 98th percentile of the distance of `draws` exact draws from the truth."""
    keys, weights = list(exact), list(exact.values())
    distances = []
    for seed in range(repeats):
        counts: dict = {}
        for key in random.Random(seed).choices(keys, weights, k=draws):
            counts[key] = counts.get(key, 0) + 1
        distances.append(total_variation(counts, exact))
    distances.sort()
    return sum(distances) / repeats, distances[int(repeats * 0.98)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", action="store_true", help="only the exact sampler's spread, by simulation")
    parser.add_argument("--paths", default="", help="path names to run, separated by semicolons (default: all)")
    args = parser.parse_args()
    exact = power_distribution(chain(), ALPHA, LENGTH)
    tempered = tempered_distribution(chain(), 1 / ALPHA, LENGTH)
    mean, p98 = noise(exact, DRAWS)
    print(f"chain: {len(WORDS)} words, alpha {ALPHA:g}, answers of at most {LENGTH} words: {len(exact)} answers")
    print(f"tempering at 1/alpha, exactly: TV {total_variation({k: v * 1e9 for k, v in tempered.items()}, exact):.3f}"
          f" from p^alpha")
    print(f"an exact sampler's {DRAWS} draws: TV {mean:.3f} on average, {p98:.3f} at the 98th percentile")
    if args.noise:
        return
    chosen = [p.strip() for p in args.paths.split(";") if p.strip()] or list(PATHS)
    print(f"\n| path | {' | '.join(STRATEGIES)} | labelled |\n|---|{'---:|' * len(STRATEGIES)}---|")
    for path in chosen:
        cells, labels = [], set()
        for settings, every_chain in STRATEGIES.values():
            runs = DRAWS // settings.chains if every_chain else DRAWS
            started = time.perf_counter()
            (counts, results), _ = PATHS[path](settings, runs, every_chain)
            failed = sum(r.error is not None for r in results)
            cells.append(f"{total_variation(counts, exact):.3f}" + (f" ({failed} failed)" if failed else "")
                         + f" · {time.perf_counter() - started:.0f}s")
            if settings.strategy != "sample":
                labels |= {"approximate" if r.approximate else "exact" for r in results}
        print(f"| {path} | {' | '.join(cells)} | {' and '.join(sorted(labels))} |", flush=True)


if __name__ == "__main__":
    main()
