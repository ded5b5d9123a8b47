"""Scalable power sampling, after Ji, Tutunov, Zimmer & Bou Ammar 2026 (arXiv 2601.21590): no MCMC, an answer
grown token decision by token decision from an estimate of p^alpha's own next-token conditional.

p^alpha(v | prefix) is proportional to p(v | prefix)^alpha * zeta(v), zeta(v) the p^alpha mass of every future
after v. At each decision (the first token of every block) the `top_k` likeliest next tokens are the candidates
(one request for one token with its top alternatives, at temperature 1 so that they are raw log p on every
backend); each candidate's zeta is estimated from `rollouts` continuations of `horizon` tokens drawn from the
proposal q (one request per candidate with n = rollouts, all under the shared cap), as the mean of
p^alpha/q; the candidates' probabilities are jackknife-corrected (engine.scoring.sps_token_probabilities) and
one is drawn. The rest of the block is the first block_tokens - 1 tokens of one of the chosen token's own
rollouts, picked in proportion to p^alpha/q: the paper's rollouts double as the block's text, so a block costs
two rounds, not block_tokens of them. A candidate that ends the answer has zeta = 1 exactly.

It is an approximation by construction: tokens outside the top K are never drawn, a finite horizon sees only
part of the future and a finite M leaves a bias the jackknife only shrinks. With every token a candidate,
block_tokens 1 and a horizon to max_tokens it tends to p^alpha as M grows; how far it lands at each size is
measured on the enumerable chains (benchmarks.sps_distance).
"""

from __future__ import annotations

import dataclasses
import math

from engine.errors import BackendError, RunFailed
from engine.registry import Column, PopulationView, StrategyInfo
from engine.sampler import Continuation
from engine.scoring import (
    Candidate,
    normalized_weights,
    smc_log_weight_increment,
    sps_log_future_mass,
    sps_token_probabilities,
    weighted_choice,
)
from engine.strategies.base import ROOT, Outcome, SearchContext, failure


class ScalablePowerSampling:
    async def run(self, search: SearchContext) -> Outcome:
        settings = search.settings
        state = ROOT
        block, candidates_seen = 0, 0
        while not state.finished and state.length < settings.max_tokens:
            block += 1
            decided = await self._decide(search, state, block)
            if isinstance(decided, str):
                return self._outcome(search, state, block - 1, candidates_seen, "error", decided)
            state, count = decided
            candidates_seen += count
        return self._outcome(search, state, block, candidates_seen, "finished" if state.finished else "max_tokens")

    async def _decide(self, search: SearchContext, state: Candidate, block: int) -> tuple[Candidate, int] | str:
        """One decision: the candidates, their rollouts, the token drawn and the block's rest. A string: why the
        decision could not be taken."""
        settings = search.settings
        # At least two alternatives: asked for one, some servers give none beyond the sampled token.
        ask = dataclasses.replace(search.request(state, n=1, max_tokens=1, key=(block, "candidates"), temperature=1.0),
                                  top_logprobs=max(2, settings.top_k))
        (asked,) = await search.round(block, "candidates", [(ask, state)])
        if isinstance(asked, BackendError) or not asked:
            return f"block {block} failed: the candidates' request failed ({failure([asked])})"
        tokens = self._candidates(search, asked[0])
        left = settings.max_tokens - state.length - 1  # tokens after a candidate, within max_tokens
        horizon = min(settings.rollout_horizon, left)
        children = [search.extend(state, Continuation((token,), "", (logp,), "stop" if search.sampler.is_end(token)
                                                      else "length", (logp,))) for token, logp in tokens]
        rolled = [index for index, child in enumerate(children) if not child.finished and horizon > 0]
        requests = [(search.request(children[index], n=settings.rollouts, max_tokens=horizon,
                                    key=(block, "rollouts", index)), children[index]) for index in rolled]
        outcomes = await search.round(block, "rollouts", requests) if requests else []
        rollouts: dict[int, list[Continuation]] = {index: [] for index in range(len(children))}
        weights: dict[int, list[float]] = {index: [0.0] for index in range(len(children))}  # zeta = 1: no future
        for index, outcome in zip(rolled, outcomes, strict=True):
            if isinstance(outcome, BackendError) or not outcome:
                del weights[index]  # its future is unknown: it cannot be weighed, so it is not drawn
                continue
            rollouts[index] = outcome
            weights[index] = [smc_log_weight_increment(search.alpha, c.logprobs, c.proposal_logprobs)
                              for c in outcome]
        if not weights:
            return f"block {block} failed: every candidate's rollouts failed ({failure(outcomes)})"
        kept = sorted(weights)
        probabilities = sps_token_probabilities([tokens[i][1] for i in kept], [weights[i] for i in kept],
                                                search.alpha)
        chosen = kept[weighted_choice(probabilities, search.rng("choose", block).random())]
        child = children[chosen]
        drawn = probabilities[kept.index(chosen)]
        child = dataclasses.replace(child, proposal_logprobs=state.proposal_logprobs + (math.log(drawn),))
        advanced = child
        rest = min(settings.block_tokens - 1, left)
        if rollouts[chosen] and rest > 0:
            pick = weighted_choice(normalized_weights(weights[chosen]), search.rng("rollout", block).random())
            advanced = search.extend(child, _head(rollouts[chosen][pick], rest, search))
        members = []
        for index, candidate in enumerate(children):
            probability = probabilities[kept.index(index)] if index in weights else 0.0
            status = "kept" if index == chosen else "pruned"
            members.append(search.member(candidate, index, "finished" if candidate.finished and status == "kept"
                                         else status, weight=probability,
                                         log_weight=sps_log_future_mass(weights[index]) if index in weights
                                         else -math.inf))
        search.report(members, advanced)
        return advanced, len(children)

    @staticmethod
    def _candidates(search: SearchContext, continuation: Continuation) -> list[tuple[int, float]]:
        """The top_k likeliest next tokens, (id, raw log p), likeliest first; never an impossible one."""
        alternatives = continuation.top_logprobs[0] if continuation.top_logprobs else ()
        possible = sorted((pair for pair in alternatives if pair[1] > -math.inf), key=lambda pair: -pair[1])
        tokens = possible[:search.settings.top_k]
        if not tokens or any(token < 0 for token, _ in tokens):
            raise RunFailed(
                f"sps needs the top alternatives of the next token as token ids, and the {search.sampler.name} "
                f"backend ({search.sampler.model_name}) returned "
                f"{'none' if not tokens else 'strings that are not one token each of our tokenizer'}"
            )
        return tokens

    @staticmethod
    def _outcome(search: SearchContext, state: Candidate, decisions: int, candidates: int, stop_reason: str,
                 error: str | None = None) -> Outcome:
        settings = search.settings
        stats = {"draw": "approximate", "decisions": decisions, "top_k": settings.top_k,
                 "rollouts": settings.rollouts, "horizon": settings.rollout_horizon,
                 "mean_candidates": round(candidates / decisions, 3) if decisions else 0.0}
        answer = state if state.length else None
        return Outcome(answer, [answer] if answer else [], stop_reason, error, stats)


def _head(rollout: Continuation, count: int, search: SearchContext) -> Continuation:
    """The first `count` tokens of a rollout, ended as it ended when it is no longer."""
    if len(rollout.token_ids) <= count:
        return rollout
    return Continuation(rollout.token_ids[:count], search.sampler.detokenize(rollout.token_ids[:count]),
                        rollout.logprobs[:count], "length",
                        rollout.proposal_logprobs[:count] if rollout.proposal_logprobs is not None else None)


def answer_is(settings) -> str:
    return (f"an approximate draw from p^alpha: each block's first token drawn from the top {settings.top_k} by "
            f"p^alpha times the future mass {settings.rollouts} rollouts of {settings.rollout_horizon} tokens "
            "estimate (jackknife-corrected), the block's rest from the chosen token's rollouts by weight; not exact "
            "at finite top-k, rollouts and horizon")


INFO = StrategyInfo(
    "sps", ScalablePowerSampling, answer_is,
    PopulationView("Candidates", (Column("prob", 6, "weight", ".3f"), Column("log ζ", 8, "log_weight", ".3f"),
                                  Column("target", 9, "target", ".3f"), Column("tokens", 6, "tokens"))),
    sizes=("top_k", "rollouts"), grows=("rollouts",), width="top_k", depth="rollouts",
    reads=("horizon",),
    needs_proposal_logprobs=True, blockwise=True,
)
