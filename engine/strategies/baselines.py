"""Baselines for eval: one answer, greedy (temperature 0) or sampled at the proposal temperature."""

from __future__ import annotations

from engine.registry import PopulationView, StrategyInfo
from engine.strategies.base import SearchContext
from engine.strategies.best_of_n import ANSWERS, BestOfN


class Greedy(BestOfN):
    def count(self, search: SearchContext) -> int:
        return 1


class Sample(BestOfN):
    """One draw from the proposal: with the default temperature 1/alpha, token-level tempering, which is not
    p^alpha over answers (the exactness test shows the gap)."""

    def count(self, search: SearchContext) -> int:
        return 1


GREEDY = StrategyInfo("greedy", Greedy, lambda settings: "greedy: the likeliest token at each step (temperature 0)",
                      PopulationView("Answer", ANSWERS), temperature=0.0)
SAMPLE = StrategyInfo(
    "sample", Sample,
    lambda settings: (f"one proposal draw: temperature {settings.proposal_temperature:g} at each token, which is "
                      "not p^alpha"),
    PopulationView("Answer", ANSWERS),
)
