"""Best-of-N: N independent whole answers from the proposal, the best by target score (alpha * log p)."""

from __future__ import annotations

from engine.errors import BackendError
from engine.registry import Column, PopulationView, StrategyInfo
from engine.scoring import Candidate, rank
from engine.strategies.base import ROOT, Outcome, SearchContext, failure, stop_reason_of

# What the population view of a strategy of whole answers shows.
ANSWERS = (Column("target", 9, "target", ".3f"), Column("mean logp", 9, "mean_logprob", ".4f"),
           Column("tokens", 6, "tokens"))


class BestOfN:
    def count(self, search: SearchContext) -> int:
        return search.settings.best_of

    async def run(self, search: SearchContext) -> Outcome:
        settings = search.settings
        requests = [(search.request(ROOT, n=1, max_tokens=settings.max_tokens, key=("answer", index),
                                    temperature=settings.sampling_temperature), ROOT)
                    for index in range(self.count(search))]
        outcomes = await search.round(1, "sample", requests)
        answers = [search.extend(ROOT, c) for o in outcomes if not isinstance(o, BackendError) for c in o]
        if not answers:
            return Outcome(None, [], "error", f"every request failed ({failure(outcomes)})")
        return self.choose(search, answers)

    def choose(self, search: SearchContext, answers: list[Candidate]) -> Outcome:
        """The answer among the samples: the likeliest under the target."""
        ranked = rank(answers)
        search.report([search.member(a, slot, "finished" if a.finished else "kept") for slot, a in enumerate(ranked)],
                      ranked[0])
        return Outcome(ranked[0], ranked, stop_reason_of(answers))


INFO = StrategyInfo(
    "best-of-n", BestOfN,
    lambda settings: (f"the likeliest of {settings.best_of}: the proposal with the highest alpha*log p, "
                      "mode-seeking, not a draw from p^alpha"),
    PopulationView("Samples", ANSWERS), sizes=("best_of",), grows=("best_of",), width="best_of",
)
