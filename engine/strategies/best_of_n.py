"""Best-of-N: N independent whole answers from the proposal, the best by target score (alpha * log p)."""

from __future__ import annotations

from engine.errors import BackendError
from engine.scoring import Candidate, rank
from engine.strategies.base import ROOT, Outcome, SearchContext, failure


class BestOfN:
    name = "best-of-n"
    needs_proposal_logprobs = False

    @staticmethod
    def answer_is(settings) -> str:
        return (f"the likeliest of {settings.best_of}: the proposal with the highest alpha*log p, mode-seeking, not a "
                "draw from p^alpha")

    def count(self, search: SearchContext) -> int:
        return search.settings.best_of

    def temperature(self, search: SearchContext) -> float:
        return search.settings.proposal_temperature

    async def run(self, search: SearchContext) -> Outcome:
        settings = search.settings
        requests = [(search.request(ROOT, n=1, max_tokens=settings.max_tokens, key=("answer", index),
                                    temperature=self.temperature(search)), ROOT)
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
        return Outcome(ranked[0], ranked, "finished" if all(a.finished for a in answers) else "max_tokens")
