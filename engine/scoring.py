"""Beams and the pure functions that score and prune them.

Power sampling targets p^alpha. Scores are `alpha * sum(log p) / length**length_penalty`; alpha scales every
score alike, so it never changes the ranking. It acts through the proposal temperature (1/alpha by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Beam:
    """A partial answer: the tokens generated after the prompt, with their log-probabilities."""

    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    text: str = ""
    finished: bool = False
    score: float = 0.0
    parent: int = -1  # index of the beam this one extends, in the previous block

    @property
    def length(self) -> int:
        return len(self.token_ids)

    @property
    def logprob_sum(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean_logprob(self) -> float:
        return mean_logprob(self.logprobs)


def mean_logprob(logprobs: Sequence[float]) -> float:
    return float(sum(logprobs)) / len(logprobs) if logprobs else 0.0


def beam_score(logprobs: Sequence[float], alpha: float, length_penalty: float) -> float:
    """Length-normalised log-likelihood under the power target p^alpha."""
    if not logprobs:
        return 0.0
    return alpha * float(sum(logprobs)) / len(logprobs) ** length_penalty


def rank(beams: Iterable[Beam]) -> list[Beam]:
    """Best first; ties break on the tokens so every run orders equal scores the same way."""
    return sorted(beams, key=lambda beam: (-beam.score, beam.token_ids))


def unique(beams: Iterable[Beam]) -> tuple[list[Beam], int]:
    """Drop candidates whose tokens repeat an earlier one; return the rest and how many were dropped."""
    seen: set[tuple[int, ...]] = set()
    kept: list[Beam] = []
    dropped = 0
    for beam in beams:
        if beam.token_ids in seen:
            dropped += 1
        else:
            seen.add(beam.token_ids)
            kept.append(beam)
    return kept, dropped


@dataclass(frozen=True)
class Selection:
    survivors: list[Beam]  # unfinished, to extend in the next block
    finished: list[Beam]  # finished this block, kept aside
    pruned: list[Beam]
    duplicates: int


def select(candidates: Iterable[Beam], beam_width: int) -> Selection:
    """Keep the best `beam_width` distinct candidates; finished ones leave the active set."""
    distinct, duplicates = unique(candidates)
    ranked = rank(distinct)
    top, pruned = ranked[:beam_width], ranked[beam_width:]
    return Selection(
        survivors=[beam for beam in top if not beam.finished],
        finished=[beam for beam in top if beam.finished],
        pruned=pruned,
        duplicates=duplicates,
    )
