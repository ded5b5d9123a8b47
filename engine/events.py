"""Typed events a search emits. The CLI, the TUI and the tests all consume this one stream.

Every event carries the `run_id` of the search that emitted it, so a consumer can drop events of a run it
has already abandoned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.search import SearchResult
    from engine.settings import SearchSettings


@dataclass(frozen=True)
class SearchStarted:
    run_id: str
    settings: SearchSettings
    backend: str
    seed: int
    prompt_tokens: int
    max_concurrent: int


@dataclass(frozen=True)
class BlockStarted:
    run_id: str
    block: int  # 1-based
    max_blocks: int
    active_beams: int
    requests: int


@dataclass(frozen=True)
class RequestStarted:
    run_id: str
    block: int
    request_id: int
    in_flight: int


@dataclass(frozen=True)
class RequestRetried:
    run_id: str
    block: int
    request_id: int
    attempt: int  # the attempt that failed, 1-based
    reason: str
    delay_s: float


@dataclass(frozen=True)
class RequestFinished:
    run_id: str
    block: int
    request_id: int
    latency_s: float  # the successful (or last) attempt
    prompt_tokens: int
    completion_tokens: int
    retries: int
    in_flight: int
    error: str | None = None  # set when the request failed for good


@dataclass(frozen=True)
class ScoredCandidate:
    beam: int  # index of the parent beam in this block
    score: float
    mean_logprob: float
    tokens: int  # generated tokens so far, this block included
    finished: bool
    kept: bool
    text_tail: str


@dataclass(frozen=True)
class CandidatesScored:
    run_id: str
    block: int
    candidates: tuple[ScoredCandidate, ...]  # best first
    dropped_duplicates: int


@dataclass(frozen=True)
class BlockFinished:
    run_id: str
    block: int
    wall_s: float
    sum_request_s: float  # what a sequential loop would have spent on this block's requests
    requests: int
    failed: int
    tokens: int  # completion tokens generated in this block
    best_text: str
    best_score: float


@dataclass(frozen=True)
class SearchFinished:
    run_id: str
    result: SearchResult


Event = (
    SearchStarted | BlockStarted | RequestStarted | RequestRetried | RequestFinished | CandidatesScored
    | BlockFinished | SearchFinished
)
EventSink = Callable[[Event], None]


def discard(_event: Event) -> None:
    """An event sink for callers that only want the result."""
