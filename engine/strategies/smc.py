"""Sequential Monte Carlo power sampling, after Power-SMC (Azizi et al. 2026, arXiv 2602.10273).

`particles` answers grow block by block from the proposal q (the model at the proposal temperature, 1/alpha by
default: the paper proves it the prefix-only proposal of least incremental weight variance). Each particle's
log importance weight grows by alpha * log p(block) - log q(block), so the weighted particles target p^alpha.
When the effective sample size falls below `ess_threshold` of the particle count they are resampled
systematically and their weights equalised, as the paper does with threshold 0.5. We correct weights per block
rather than per token (the same product), and record which particle each copy came from. A particle's `score`
is its target alpha*log p, as in every strategy; its weight is `log_weight`. The answer (`output`) is a particle
drawn by weight, a draw from p^alpha as particles grow ("sample"), or the particle with the highest target, a
mode-seeking choice ("best").
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

from engine.errors import BackendError
from engine.registry import OUTPUTS, Column, PopulationView, StrategyInfo
from engine.scoring import (
    Candidate,
    effective_sample_size,
    log_sum_exp,
    normalized_weights,
    rank,
    smc_log_weight_increment,
    systematic_resample,
)
from engine.strategies.base import ROOT, Outcome, SearchContext, choose_output, failure, output_is, stop_reason_of


class SequentialMonteCarlo:
    async def run(self, search: SearchContext) -> Outcome:
        settings = search.settings
        particles: list[Candidate] = [ROOT] * settings.particles
        resamples = 0
        ess = float(settings.particles)
        for block in range(1, settings.max_blocks + 1):
            growing = [slot for slot, p in enumerate(particles)
                       if not p.finished and p.log_weight > -math.inf and search.block_budget(p.length, block) > 0]
            if not growing:
                break
            # Copies made by resampling share a prefix: one request per distinct particle, n = its copies.
            groups: dict[int, list[int]] = defaultdict(list)
            for slot in growing:
                groups[particles[slot].node].append(slot)
            requests = []
            for slots in groups.values():
                parent = particles[slots[0]]
                budget = search.block_budget(parent.length, block)
                requests.append((search.request(parent, n=len(slots), max_tokens=budget, key=(block, slots[0])),
                                 parent))
            outcomes = await search.round(block, "extend", requests)
            grown = list(particles)
            for slots, (_, parent), outcome in zip(groups.values(), requests, outcomes, strict=True):
                continuations = [] if isinstance(outcome, BackendError) else outcome
                for index, slot in enumerate(slots):
                    if index < len(continuations):
                        grown[slot] = self._extend(search, parent, continuations[index])
                    else:  # a lost request: the particle cannot keep up, so it leaves the population
                        grown[slot] = dataclasses.replace(parent, log_weight=-math.inf)
            if all(p.log_weight == -math.inf for p in grown):
                return self._outcome(search, particles, resamples, ess, "error",
                                     f"block {block} failed: every particle's request failed ({failure(outcomes)})")
            particles = grown
            log_weights = [p.log_weight for p in particles]
            ess = effective_sample_size(log_weights)
            weights = normalized_weights(log_weights)
            more_to_come = block < settings.max_blocks and any(not p.finished for p in particles)
            dropped: list[tuple[int, Candidate]] = []
            if more_to_come and ess < settings.ess_threshold * settings.particles:
                particles, dropped = self._resample(search, particles, weights, block)
                resamples += 1
            members = self._members(search, particles, dropped)
            search.report(members, rank(p for p in particles if p.log_weight > -math.inf)[0], ess=ess,
                          resampled=bool(dropped))
        alive = [p for p in particles if p.log_weight > -math.inf]
        return self._outcome(search, particles, resamples, ess, stop_reason_of(alive))

    @staticmethod
    def _extend(search: SearchContext, parent: Candidate, continuation) -> Candidate:
        increment = smc_log_weight_increment(search.alpha, continuation.logprobs, continuation.proposal_logprobs)
        return search.extend(parent, continuation, log_weight=parent.log_weight + increment)

    @staticmethod
    def _resample(search: SearchContext, particles: list[Candidate], weights: list[float], block: int):
        """Systematic resampling: copies in proportion to weight, all with the mean weight afterwards."""
        chosen = systematic_resample(weights, search.rng("resample", block).random())
        mean = log_sum_exp([p.log_weight for p in particles]) - math.log(len(particles))
        kept = set(chosen)
        dropped = [(slot, p) for slot, p in enumerate(particles) if slot not in kept]
        copies = [particles[i] for i in chosen]
        equalised = {p.node: dataclasses.replace(p, log_weight=mean) for p in copies}
        return [equalised[p.node] for p in copies], dropped

    @staticmethod
    def _members(search: SearchContext, particles: list[Candidate], dropped: list[tuple[int, Candidate]]):
        weights = normalized_weights([p.log_weight for p in particles])
        order = sorted(range(len(particles)), key=lambda slot: (-particles[slot].score, particles[slot].token_ids))
        members = [search.member(particles[slot], slot, "finished" if particles[slot].finished else "kept",
                                 weight=weights[slot], log_weight=particles[slot].log_weight) for slot in order]
        members += [search.member(p, slot, "resampled", weight=0.0, log_weight=p.log_weight) for slot, p in dropped]
        return members

    @staticmethod
    def _outcome(search: SearchContext, particles: list[Candidate], resamples: int, ess: float, stop_reason: str,
                 error: str | None = None) -> Outcome:
        alive = [p for p in particles if p.length and p.log_weight > -math.inf]
        stats = {"resamples": resamples, "final_ess": round(ess, 4), "particles": len(particles)}
        if not alive:
            return Outcome(None, [], stop_reason, error, stats)
        answer = choose_output(search, alive, normalized_weights([p.log_weight for p in alive]))
        return Outcome(answer, rank({p.node: p for p in alive}.values()), stop_reason, error, stats)


INFO = StrategyInfo(
    "smc", SequentialMonteCarlo, output_is("particle", "one final particle, drawn by weight"),
    PopulationView("Particles", (Column("weight", 6, "weight", ".3f"), Column("log w", 9, "log_weight", ".3f"),
                                 Column("mean logp", 9, "mean_logprob", ".4f"), Column("tokens", 6, "tokens"))),
    sizes=("particles",), grows=("particles",), width="particles", reads=("ess_threshold",),
    needs_proposal_logprobs=True,
    outputs=OUTPUTS, blockwise=True, weighted=True,
)
