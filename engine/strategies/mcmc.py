"""The Metropolis-Hastings power sampler of "Reasoning with Sampling" (Karan & Du 2025, arXiv 2510.14901).

Each chain builds its answer block by block from the proposal q (the model at the proposal temperature).
After each block it takes `mcmc_steps` Metropolis-Hastings steps against p^alpha over the answer so far: pick
a token position uniformly, regenerate the suffix from there up to the block's end, and accept with
probability min(1, p(new)^alpha q(old) / (p(old)^alpha q(new))) (`scoring.mh_log_weight`). With enough
steps the last block's chain state is a draw from p^alpha over whole answers. `chains` run concurrently (the
reference implementation's ParallelMCMC): every round asks one request per chain. The answer (`output`) is a
chain's final state chosen uniformly, a draw from p^alpha as steps grow ("sample"), or the final state with the
highest target alpha*log p, a mode-seeking choice ("best").

With `tries` K > 1 a step is multiple-try Metropolis (Liu, Liang & Wong 2000): from the chosen position one
request with n = 2K-1 draws K proposals and K-1 reference suffixes; one proposal is picked by weight and
accepted with the ratio of the proposals' summed weights to the references' (`scoring.mtm_log_acceptance`), so
the chain still targets p^alpha. On a server where a batch costs about one stream, a step costs about what a
plain step does, and accepts more often.

With `cut` "entropy" (Zhou, Mehrotra & Liu 2026, "Reasoning with Sampling: Cutting at Decision Points", arXiv
2605.30327) the position is drawn where the model's next-token entropy rises (`scoring.cut_log_probabilities`),
so steps revisit the answer's decisions rather than its local details. Each answer's weight carries the log
probability its own cut distribution gives the position, the Hastings term of the reverse move, which keeps the
chain on p^alpha. The entropies are exact on the local backend and estimated from the top alternatives on
remote ones (the run says which).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from engine.errors import BackendError
from engine.registry import CUTS, OUTPUTS, Column, PopulationView, StrategyInfo
from engine.sampler import Continuation
from engine.scoring import (
    Candidate,
    accepts,
    cut_log_probabilities,
    mh_log_weight,
    mtm_log_acceptance,
    normalized_weights,
    rank,
    weighted_choice,
)
from engine.strategies.base import ROOT, Outcome, SearchContext, choose_output, failure, output_is, stop_reason_of

CUTS_SHOWN = 8  # a chain's last cuts marked on its text in the population view


@dataclass
class Chain:
    slot: int
    state: Candidate = ROOT
    proposed: int = 0
    accepted: int = 0
    failed: bool = False
    pending: list = field(default_factory=list)  # this round's proposals, for the report
    cuts: list[int] = field(default_factory=list)  # where its last steps cut it (token positions), for the view


class MetropolisHastings:
    async def run(self, search: SearchContext) -> Outcome:
        settings = search.settings
        chains = [Chain(slot) for slot in range(settings.chains)]
        for block in range(1, settings.max_blocks + 1):
            if block > 1 and all(c.failed or c.state.finished for c in chains):
                return self._outcome(search, chains, "finished")  # every answer has ended: no block left to grow
            growing = [c for c in chains if not c.failed and not c.state.finished
                       and search.block_budget(c.state.length, block) > 0]
            if growing:
                error = await self._extend(search, block, growing)
                if error:
                    return self._outcome(search, chains, "error", error)
            for step in range(1, settings.mcmc_steps + 1):
                error = await self._step(search, block, step, [c for c in chains if not c.failed and c.state.length])
                if error:
                    return self._outcome(search, chains, "error", error)
        return self._outcome(search, chains, stop_reason_of([c.state for c in chains if not c.failed]))

    async def _extend(self, search: SearchContext, block: int, chains: list[Chain]) -> str | None:
        requests = [(search.request(c.state, n=1, max_tokens=search.block_budget(c.state.length, block),
                                    key=(block, "extend", c.slot)), c.state) for c in chains]
        outcomes = await search.round(block, "extend", requests)
        for chain, outcome in zip(chains, outcomes, strict=True):
            if isinstance(outcome, BackendError) or not outcome:
                chain.failed = True  # its answer would lag a block behind the target: it stops here
            else:
                chain.state = search.extend(chain.state, outcome[0])
        if all(c.failed for c in chains):
            return f"block {block} failed: every chain's request failed ({failure(outcomes)})"
        self._report(search, chains)
        return None

    async def _step(self, search: SearchContext, block: int, step: int, chains: list[Chain]) -> str | None:
        """One Metropolis-Hastings step of every chain, the proposals sent together."""
        if not chains:
            return None
        tries = search.settings.tries
        positions = {c.slot: self.cut_position(search, c.state, search.rng("position", block, step, c.slot))
                     for c in chains}
        chains = [c for c in chains if search.block_budget(positions[c.slot], block) > 0]
        if not chains:
            return None  # re-tokenised text (text-mode servers) can run past the block's end
        requests = []
        for chain in chains:
            prefix = search.prefix(chain.state, positions[chain.slot])
            budget = search.block_budget(prefix.length, block)
            requests.append((search.request(prefix, n=2 * tries - 1, max_tokens=budget, key=(block, step, chain.slot)),
                             prefix))
        outcomes = await search.round(block, "propose", requests)
        for chain, (_, prefix), outcome in zip(chains, requests, outcomes, strict=True):
            if isinstance(outcome, BackendError) or len(outcome) < 2 * tries - 1:
                continue  # no proposal this step; the chain stays where it is
            position = prefix.length
            old = chain.state

            def weight(suffix: Continuation, position: int = position, prefix: Candidate = prefix) -> float:
                answer = (position + len(suffix.token_ids), prefix.entropies + (suffix.entropies or ()))
                return mh_log_weight(search.alpha, suffix.logprobs, suffix.proposal_logprobs,
                                     self.log_cut(search, *answer, position))

            proposals, references = outcome[:tries], outcome[tries:]
            proposal_weights = [weight(suffix) for suffix in proposals]
            chain.proposed += 1
            chain.cuts = [*chain.cuts[1 - CUTS_SHOWN:], position]
            if max(proposal_weights) == -math.inf:  # no proposal can be undone: each is rejected
                chain.pending.append((search.extend(prefix, proposals[0]), position, False))
                continue
            pick = search.rng("select", block, step, chain.slot).random()
            new = search.extend(prefix, proposals[weighted_choice(normalized_weights(proposal_weights), pick)])
            current = mh_log_weight(search.alpha, old.logprobs[position:], old.proposal_logprobs[position:],
                                    self.log_cut(search, old.length, old.entropies, position))
            log_ratio = mtm_log_acceptance(proposal_weights, [weight(suffix) for suffix in references] + [current])
            accepted = accepts(log_ratio, search.rng("accept", block, step, chain.slot).random())
            chain.pending.append((new, position, accepted))
            if accepted:
                chain.accepted += 1
                chain.state = new
        if all(isinstance(o, BackendError) for o in outcomes):
            return f"block {block}, step {step} failed: every proposal failed ({failure(outcomes)})"
        self._report(search, chains)
        return None

    @staticmethod
    def cut_position(search: SearchContext, state: Candidate, rng: random.Random) -> int:
        """Where a step cuts the chain's answer, by its cut distribution (uniform cuts draw as they always have,
        so a seed gives the answers it gave before entropy cuts existed)."""
        if search.settings.cut == "uniform":
            return rng.randrange(state.length)
        weights = [math.exp(w) for w in cut_log_probabilities("entropy", state.length, state.entropies)]
        return weighted_choice(weights, rng.random())

    @staticmethod
    def log_cut(search: SearchContext, length: int, entropies: tuple[float, ...], position: int) -> float:
        """log probability that an answer's own cut distribution picks `position`: the reverse move's term. An
        answer no longer than the position (a text server dropped the end token a suffix ended with) cannot be
        cut there, so the move cannot be undone: -inf, and the proposal is never taken."""
        if position >= length:
            return -math.inf
        return cut_log_probabilities(search.settings.cut, length, entropies)[position]

    def _report(self, search: SearchContext, chains: list[Chain]) -> None:
        members = [search.member(c.state, c.slot, "finished" if c.state.finished else "kept",
                                 proposed=c.proposed, accepted=c.accepted, cut_offsets=self._cut_offsets(search, c))
                   for c in sorted(chains, key=lambda c: -c.state.score)]
        for chain in chains:
            members += [search.member(new, chain.slot, "accepted" if ok else "rejected", position=position)
                        for new, position, ok in chain.pending]
            chain.pending = []
        search.report(members, rank(c.state for c in chains)[0])

    @staticmethod
    def _cut_offsets(search: SearchContext, chain: Chain) -> tuple[int, ...]:
        """Where the chain's last steps cut its answer, as characters from the end of its text: what the
        population view marks on the text's tail. Only when someone watches (a dashboard's live board): each cut is
        a decode, a round trip with a server's own tokenizer."""
        if search.live is None:
            return ()
        state = chain.state
        return tuple(sorted({len(state.text) - len(search.sampler.detokenize(state.token_ids[:position]))
                             for position in chain.cuts if 0 < position < state.length}))

    @staticmethod
    def _outcome(search: SearchContext, chains: list[Chain], stop_reason: str, error: str | None = None) -> Outcome:
        finals = [c.state for c in chains if c.state.length and not c.failed]
        proposed = sum(c.proposed for c in chains)
        accepted = sum(c.accepted for c in chains)
        stats = {"tries": search.settings.tries, "cut": search.settings.cut, "proposals": proposed,
                 "accepted": accepted,
                 "acceptance_rate": round(accepted / proposed, 4) if proposed else None,
                 "chains_failed": sum(c.failed for c in chains)}
        if search.settings.cut == "entropy":
            stats["entropies"] = "estimated from top alternatives" if search.entropies_estimated else "exact"
        answer = choose_output(search, finals, [1.0] * len(finals))
        return Outcome(answer, rank(finals), stop_reason, error, stats)


INFO = StrategyInfo(
    "mcmc", MetropolisHastings, output_is("chain", "one chain's final state, chosen uniformly"),
    PopulationView("Chains", (Column("target", 9, "target", ".3f"), Column("accepted", 8, "moves"),
                              Column("mean logp", 9, "mean_logprob", ".4f"), Column("tokens", 6, "tokens")),
                   by_slot=True),
    sizes=("chains", "mcmc_steps", "tries"), optional_sizes=1, grows=("mcmc_steps",), width="chains",
    depth="mcmc_steps",
    needs_proposal_logprobs=True,
    outputs=OUTPUTS, cuts=CUTS, blockwise=True,
)
