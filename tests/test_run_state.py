"""The one fold of a run's events that the CLI, the dashboard and the tests read."""

from __future__ import annotations

from engine.events import CandidatesGrowing, LiveCandidate, RequestFinished, RoundFinished, RoundStarted
from engine.run_state import RunState
from engine.settings import BackendSettings, SearchSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def growing(*counts: int) -> CandidatesGrowing:
    return CandidatesGrowing("r", 1, tuple(LiveCandidate(f"1:{i}:0", 0, n, n, -0.5, "…") for i, n in enumerate(counts)))


def test_tokens_are_counted_as_they_stream_not_when_requests_end():
    clock = Clock()
    state = RunState("r", SearchSettings(), BackendSettings(), clock=clock)
    state.apply(RoundStarted("r", 1, 1, 4, "extend", 2))
    clock.now += 1
    state.apply(growing(10, 12))
    assert state.tokens == 22 and state.rates()[0] > 0  # two requests decoding, none finished yet
    clock.now += 1
    state.apply(RequestFinished("r", 1, 1, 2.0, 5, 16, 0, 1))
    state.apply(growing(16, 20))
    assert state.tokens == 36  # the finished request's 16 tokens were already seen growing: not counted twice
    state.apply(RequestFinished("r", 1, 2, 2.0, 5, 32, 0, 0))
    assert state.tokens == 48
    state.apply(RoundFinished("r", 1, 1, 2.0, 4.0, 2, 0, 48, "text", -1.0))
    assert state.tokens == 48 and state.rates()[1] > 0


def test_a_backend_that_does_not_stream_counts_each_request_as_it_ends():
    state = RunState("r", SearchSettings(), BackendSettings(), clock=Clock())
    state.apply(RoundStarted("r", 1, 1, 4, "extend", 2))
    state.apply(RequestFinished("r", 1, 1, 2.0, 5, 16, 0, 1))
    assert state.tokens == 16
    state.apply(RequestFinished("r", 1, 2, 2.0, 5, 32, 0, 0))
    state.apply(RoundFinished("r", 1, 1, 2.0, 4.0, 2, 0, 48, "text", -1.0))
    assert state.tokens == 48
