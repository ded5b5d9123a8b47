"""Block-wise power beam search: a deterministic approximation of the mode of p^alpha.

Every block, each active beam asks for `n_per_beam` continuations of `block_tokens` tokens at the proposal
temperature. Candidates are ranked by `alpha * sum(log p) / length**length_penalty`; repeats are dropped and
the best `beam_width` survive, the finished ones set aside. It samples tempered token distributions, which are
not p^alpha over sequences: MCMC and SMC are the exact samplers.
"""

from __future__ import annotations

from engine.errors import BackendError
from engine.registry import Column, PopulationView, StrategyInfo
from engine.scoring import Candidate, beam_score, rank, select
from engine.strategies.base import ROOT, Outcome, SearchContext, failure, stop_reason_of


class BeamSearch:
    async def run(self, search: SearchContext) -> Outcome:
        settings = search.settings
        active: list[Candidate] = [ROOT] * settings.beam_width
        finished: list[Candidate] = []
        enough = False  # beam_width answers have ended, or no beam is left to grow
        for block in range(1, settings.max_blocks + 1):
            used = active[0].length
            budget = search.block_budget(used, block)
            if budget <= 0:
                break  # re-tokenised text (text-mode servers) can reach the budget before the last block
            requests = [
                (search.request(beam, n=settings.n_per_beam, max_tokens=budget, key=(block, index)), beam)
                for index, beam in enumerate(active)
            ]
            outcomes = await search.round(block, "extend", requests)
            candidates = []
            for (_, parent), outcome in zip(requests, outcomes, strict=True):
                if not isinstance(outcome, BackendError):
                    candidates += [self._extend(search, parent, c) for c in outcome]
            if not candidates:
                so_far = rank(c for c in finished + active if c.length)
                return Outcome(so_far[0] if so_far else None, so_far, "error",
                               f"block {block} failed: every request failed ({failure(outcomes)})")
            selection = select(candidates, settings.beam_width)
            finished += selection.finished
            active = selection.survivors
            # The population is every beam alive, those that finished earlier included, then what was pruned.
            alive = rank(finished + active)
            members = [search.member(c, slot, "finished" if c.finished else "kept") for slot, c in enumerate(alive)]
            members += [search.member(c, len(alive) + slot, "pruned") for slot, c in enumerate(selection.pruned)]
            search.report(members, alive[0], duplicates=selection.duplicates)
            if not active or len(finished) >= settings.beam_width:
                enough = True
                break
        population = rank(finished + active)[: settings.beam_width]
        population = population if any(c.length for c in population) else []
        return Outcome(population[0] if population else None, population,
                       "finished" if enough else stop_reason_of(population))

    @staticmethod
    def _extend(search: SearchContext, parent: Candidate, continuation) -> Candidate:
        settings = search.settings
        logprobs = parent.logprobs + continuation.logprobs
        return search.extend(parent, continuation, beam_score(logprobs, settings.alpha, settings.length_penalty))


INFO = StrategyInfo(
    "beam", BeamSearch,
    lambda settings: "a heuristic's best: the beam with the highest alpha*log p / length^penalty, not a draw from "
                     "p^alpha",
    PopulationView("Beams", (Column("score", 9, "score", ".4f"), Column("mean logp", 9, "mean_logprob", ".4f"),
                             Column("tokens", 6, "tokens"))),
    sizes=("beam_width", "n_per_beam"), grows=("beam_width",), width="beam_width", depth="n_per_beam",
    reads=("length_penalty",),
    blockwise=True, score_is="score alpha*log p / length^penalty",
)
