"""Candidates and the pure functions every strategy scores, weighs, accepts and resamples them with.

Power sampling targets p(x)^alpha over whole answers. The target log-density of an answer is
`alpha * sum(log p)`. Proposals are drawn from q, the model at the proposal temperature (1/alpha by default),
so MCMC and SMC correct for q with its own log-probabilities; beam search only ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A partial or complete answer: the tokens after the prompt, with log p and log q of each.

    `node` is its place in the search tree and `parent` the node it continues (-1: the prompt).
    `score` is what its strategy ranks by; `log_weight` is its SMC importance weight. `finish_reason` is the
    backend's word for why its last continuation ended; only "stop" makes it `finished`.
    """

    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    proposal_logprobs: tuple[float, ...] = ()
    text: str = ""
    finished: bool = False
    score: float = 0.0
    node: int = 0
    parent: int = -1
    log_weight: float = 0.0
    finish_reason: str | None = None
    entropies: tuple[float, ...] = ()  # the model's next-token entropy at each position, where a strategy asked

    @property
    def length(self) -> int:
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float:
        return mean_logprob(self.logprobs)

    def target(self, alpha: float) -> float:
        return target_logprob(self.logprobs, alpha)


def mean_logprob(logprobs: Sequence[float]) -> float:
    return float(sum(logprobs)) / len(logprobs) if logprobs else 0.0


def target_logprob(logprobs: Sequence[float], alpha: float) -> float:
    """Unnormalised log-density of an answer under the power target p^alpha."""
    return alpha * float(sum(logprobs))


def beam_score(logprobs: Sequence[float], alpha: float, length_penalty: float) -> float:
    """Length-normalised log-likelihood under the power target. As a ranking alpha changes nothing: it scales
    every score alike; it acts through the proposal temperature."""
    if not logprobs:
        return 0.0
    return alpha * float(sum(logprobs)) / len(logprobs) ** length_penalty


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Best first; ties break on the tokens so every run orders equal scores the same way."""
    return sorted(candidates, key=lambda c: (-c.score, c.token_ids))


def unique(candidates: Iterable[Candidate]) -> tuple[list[Candidate], int]:
    """Drop candidates whose tokens repeat an earlier one; return the rest and how many were dropped."""
    seen: set[tuple[int, ...]] = set()
    kept: list[Candidate] = []
    dropped = 0
    for candidate in candidates:
        if candidate.token_ids in seen:
            dropped += 1
        else:
            seen.add(candidate.token_ids)
            kept.append(candidate)
    return kept, dropped


@dataclass(frozen=True)
class Selection:
    survivors: list[Candidate]  # unfinished, to extend in the next block
    finished: list[Candidate]  # finished this block, kept aside
    pruned: list[Candidate]
    duplicates: int


def select(candidates: Iterable[Candidate], beam_width: int) -> Selection:
    """Keep the best `beam_width` distinct candidates; finished ones leave the active set."""
    distinct, duplicates = unique(candidates)
    ranked = rank(distinct)
    top, pruned = ranked[:beam_width], ranked[beam_width:]
    return Selection(
        survivors=[c for c in top if not c.finished],
        finished=[c for c in top if c.finished],
        pruned=pruned,
        duplicates=duplicates,
    )


def mh_log_weight(alpha: float, suffix_logprobs: Sequence[float], suffix_proposal_logprobs: Sequence[float],
                  log_cut: float) -> float:
    """An answer's weight in a Metropolis-Hastings step that regenerates its suffix from one position: target over
    proposal on the regenerated suffix, alpha * log p - log q (the shared prefix cancels), plus `log_cut`, the log
    probability that this answer's own cut distribution picks that position (the Hastings term of the reverse
    move). With uniform cuts it is -log(length), and the difference of two weights is the log of Karan & Du's
    ratio (arXiv 2510.14901): alpha * (log p(new) - log p(old)) + log q(old) - log q(new) + log(old / new length).
    Any cut distribution that is a function of the answer alone keeps the chain on p^alpha so."""
    return alpha * math.fsum(suffix_logprobs) - math.fsum(suffix_proposal_logprobs) + log_cut


# The share of an entropy cut's mass spread evenly over the answer: every position stays a possible cut (so every
# answer stays reachable), and an answer whose entropy never rises is cut uniformly.
CUT_FLOOR = 0.1
CUTS = ("uniform", "entropy")


def cut_log_probabilities(cut: str, length: int, entropies: Sequence[float] = ()) -> list[float]:
    """log of the probability of cutting an answer of `length` tokens at each position, for MH's suffix
    regeneration. "uniform": 1/length each (Karan & Du). "entropy": in proportion to how far the model's
    next-token entropy rises at the position over the one before (the first position: over 0), the decision
    points of Zhou, Mehrotra & Liu (arXiv 2605.30327), mixed with CUT_FLOOR of uniform mass."""
    if cut == "uniform" or length == 0:
        return [-math.log(length)] * length if length else []
    if len(entropies) != length:
        raise ValueError(f"entropy cuts need an entropy a position: {len(entropies)} for {length} tokens")
    jumps = [max(0.0, h - (entropies[i - 1] if i else 0.0)) for i, h in enumerate(entropies)]
    total = math.fsum(jumps)
    if total <= 0:
        return [-math.log(length)] * length
    return [math.log(CUT_FLOOR / length + (1 - CUT_FLOOR) * jump / total) for jump in jumps]


def mtm_log_acceptance(proposal_log_weights: Sequence[float], reference_log_weights: Sequence[float]) -> float:
    """log of the multiple-try Metropolis ratio (Liu, Liang & Wong 2000) for proposals drawn independently of the
    current suffix: the K proposals' summed weights over the K references' (K-1 fresh draws and the current
    answer), each weighed with the log probability of its own cut at the position (mh_log_weight), whose draw
    restores p^alpha; with one try it is the plain Metropolis-Hastings ratio."""
    return log_sum_exp(proposal_log_weights) - log_sum_exp(reference_log_weights)


def accepts(log_ratio: float, uniform: float) -> bool:
    """Accept with probability min(1, exp(log_ratio)); `uniform` in [0, 1)."""
    return log_ratio >= 0 or uniform < math.exp(log_ratio)


def smc_log_weight_increment(alpha: float, logprobs: Sequence[float], proposal_logprobs: Sequence[float]) -> float:
    """What a block adds to a particle's log importance weight: alpha * log p(block) - log q(block)."""
    return alpha * math.fsum(logprobs) - math.fsum(proposal_logprobs)


def sps_log_future_mass(rollout_log_weights: Sequence[float]) -> float:
    """log zeta-hat of a candidate token: the mean over its rollouts of p^alpha/q (each rollout's
    smc_log_weight_increment), an unbiased estimate of the p^alpha mass of the futures after it. A candidate
    that ends the answer has one future, the empty one: pass (0.0,), zeta = 1."""
    return log_sum_exp(rollout_log_weights) - math.log(len(rollout_log_weights))


def sps_token_probabilities(candidate_logprobs: Sequence[float], rollout_log_weights: Sequence[Sequence[float]],
                            alpha: float, *, jackknife: bool = True) -> list[float]:
    """Scalable power sampling's next-token distribution over the candidates (Ji et al. 2026, arXiv 2601.21590):
    p^alpha(v) * zeta-hat(v), normalised. The ratio is biased by O(1/M) for M rollouts a candidate; the jackknife
    M * pi - (M - 1)/M * sum_j pi^(-j), pi^(-j) leaving out every candidate's j-th rollout, cuts the bias to
    O(1/M^2). Negative entries are clipped to 0 before renormalising; if none stays positive, the plain ratio.
    Candidates with one rollout (an end token's exact zeta) keep it in every leave-one-out."""

    def ratio(weights: Sequence[Sequence[float]]) -> list[float]:
        logits = [alpha * lp + sps_log_future_mass(w) for lp, w in zip(candidate_logprobs, weights, strict=True)]
        return normalized_weights(logits)

    plain = ratio(rollout_log_weights)
    counts = {len(w) for w in rollout_log_weights if len(w) > 1}
    if not jackknife or len(counts) != 1:  # no rollouts to leave out, or unequal counts: no jackknife
        return plain
    m = counts.pop()
    left_out = [ratio([w if len(w) == 1 else [*w[:j], *w[j + 1:]] for w in rollout_log_weights]) for j in range(m)]
    corrected = [max(0.0, m * p - (m - 1) / m * math.fsum(loo[k] for loo in left_out))
                 for k, p in enumerate(plain)]
    total = math.fsum(corrected)
    return [c / total for c in corrected] if total > 0 else plain


def log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def normalized_weights(log_weights: Sequence[float]) -> list[float]:
    total = log_sum_exp(log_weights)
    return [math.exp(w - total) for w in log_weights]


def effective_sample_size(log_weights: Sequence[float]) -> float:
    """1 / sum(w_i^2) of the normalised weights: N when all are equal, 1 when one holds all the mass."""
    return 1.0 / math.fsum(w * w for w in normalized_weights(log_weights))


def systematic_resample(weights: Sequence[float], uniform: float) -> list[int]:
    """Indices of the particles to copy: N points spaced 1/N apart from one uniform offset (low variance)."""
    count = len(weights)
    chosen: list[int] = []
    cumulative, index = weights[0], 0
    for k in range(count):
        point = (uniform + k) / count
        while point > cumulative and index < count - 1:
            index += 1
            cumulative += weights[index]
        chosen.append(index)
    return chosen


def weighted_choice(weights: Sequence[float], uniform: float) -> int:
    """One index drawn in proportion to `weights`; `uniform` in [0, 1)."""
    point, cumulative = uniform * math.fsum(weights), 0.0
    for index, weight in enumerate(weights):
        cumulative += weight
        if point < cumulative:
            return index
    return len(weights) - 1


def endpoint_score(outstanding: int, latency_s: float, failed_in_a_row: int) -> float:
    """When a new request sent to an endpoint would be answered, roughly: least outstanding requests weighted by
    observed latency, and pushed away from an endpoint that has just failed (so a retry tends to go elsewhere)."""
    return (outstanding + 1) * latency_s * (1 + failed_in_a_row)


def speedup(sequential_s: float | None, parallel_s: float | None) -> float | None:
    """How many times faster parallel ran than sequential, both measured; None until both are."""
    return sequential_s / parallel_s if sequential_s and parallel_s else None
