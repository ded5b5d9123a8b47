"""Typed events a search emits. The CLI, the TUI and the tests all fold this one stream (`engine.run_state`).

Every event carries the `run_id` of the search that emitted it, so a consumer can drop events of a run it has
already abandoned. A round is a set of requests that could run together: a beam-search block, an MCMC step
of every chain, an SMC block of every particle. Sequential mode sends a round's requests one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from engine.results import SearchResult
    from engine.settings import SearchSettings

# What happened to a member of the population in a round, as its view and the search tree show it.
Status = Literal[
    "kept",  # alive after the round
    "finished",  # ended (end of sequence) and kept
    "pruned",  # beam search dropped it for better-scoring candidates
    "resampled",  # SMC resampling dropped it
    "accepted",  # an MCMC proposal that replaced its chain's state
    "rejected",  # an MCMC proposal that did not
]


@dataclass(frozen=True)
class SearchStarted:
    run_id: str
    settings: SearchSettings
    backend: str
    seed: int
    prompt_tokens: int
    max_concurrent: int
    approximate: bool = False  # log p or log q estimated, not exact (see Sampler.logprob_quality)


@dataclass(frozen=True)
class RoundStarted:
    run_id: str
    round: int  # 1-based over the whole run
    block: int  # the block this round extends or revises, 1-based
    max_blocks: int
    stage: str  # "extend", "propose" (an MCMC step) or "sample"
    requests: int


@dataclass(frozen=True)
class RequestStarted:
    run_id: str
    round: int
    request_id: int
    in_flight: int


@dataclass(frozen=True)
class RequestRetried:
    run_id: str
    round: int
    request_id: int
    attempt: int  # the attempt that failed, 1-based
    reason: str
    delay_s: float
    endpoint: str | None = None  # which endpoint failed, when there are several


@dataclass(frozen=True)
class RequestFinished:
    run_id: str
    round: int
    request_id: int
    latency_s: float  # the successful (or last) attempt
    prompt_tokens: int
    completion_tokens: int
    retries: int
    in_flight: int
    error: str | None = None  # set when the request failed for good
    endpoint: str | None = None  # which endpoint answered (or last failed), when there are several


@dataclass(frozen=True)
class Member:
    """One candidate as the population views and the search tree show it."""

    node: int  # its node in the search tree, unique in the run
    parent: int  # the node it continues; 0 is the prompt
    slot: int  # its place in the population: beam rank, particle, chain or sample index
    status: Status
    score: float  # what its strategy ranks by (beam: length-normalised; the others: the target)
    target: float  # alpha * sum(log p)
    mean_logprob: float
    tokens: int
    finished: bool
    text_tail: str
    weight: float | None = None  # SMC: normalised importance weight
    log_weight: float | None = None  # SMC: log importance weight
    group: str | None = None  # vote: what this answer answers
    votes: int = 0  # vote: answers in its group
    position: int | None = None  # MCMC proposal: the token its suffix was regenerated from
    proposed: int = 0  # MCMC chain: proposals so far
    accepted: int = 0  # MCMC chain: accepted proposals so far
    cut_offsets: tuple[int, ...] = ()  # MCMC chain: where its last steps cut it, in characters from its text's end

    @property
    def moves(self) -> str:
        """MCMC: a chain's accepted of proposed moves, or where a proposal regenerated its suffix from (@n)."""
        return f"@{self.position}" if self.status in ("accepted", "rejected") else f"{self.accepted}/{self.proposed}"


@dataclass(frozen=True)
class PopulationUpdated:
    """The population after a round, best first, followed by what the round dropped or rejected."""

    run_id: str
    round: int
    block: int
    members: tuple[Member, ...]
    duplicates: int = 0  # beam: candidates dropped for repeating another's tokens
    ess: float | None = None  # SMC: effective sample size after the round's weights
    resampled: bool = False  # SMC: the round ended in resampling


@dataclass(frozen=True)
class LiveCandidate:
    """A continuation still being generated: what its parent holds plus the tokens so far."""

    key: str  # stable while it grows: round, request and index
    parent: int  # the node it continues
    tokens: int  # generated so far in this round
    total_tokens: int  # the parent's tokens plus these
    mean_logprob: float  # over this round's tokens so far
    text_tail: str


@dataclass(frozen=True)
class CandidatesGrowing:
    """Snapshot of the round's in-flight continuations, sent about ten times a second while they grow."""

    run_id: str
    round: int
    candidates: tuple[LiveCandidate, ...]


@dataclass(frozen=True)
class RoundFinished:
    run_id: str
    round: int
    block: int
    wall_s: float
    sum_request_s: float  # the latencies of the round's requests added up (overlapping ones overlap)
    requests: int
    failed: int
    tokens: int  # completion tokens generated in this round
    best_text: str
    best_score: float


@dataclass(frozen=True)
class SearchFinished:
    run_id: str
    result: SearchResult


@dataclass(frozen=True)
class ClientRequestStarted:
    """A request to `beamtui proxy` was admitted; its searches' run ids are `run_id`/0, `run_id`/1, ..."""

    run_id: str
    kind: str  # "chat" or "completions"
    model: str  # as the client named it
    spec: str
    searches: int  # its n
    stream: bool
    user: str | None
    prompt_head: str


@dataclass(frozen=True)
class ClientRequestFinished:
    run_id: str
    status: int  # the HTTP status it was answered with (499: the client left first)
    answer_head: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""  # the first answer's, as the API gave it
    error: str | None = None


Event = (
    SearchStarted | RoundStarted | RequestStarted | RequestRetried | RequestFinished | PopulationUpdated
    | CandidatesGrowing | RoundFinished | SearchFinished | ClientRequestStarted | ClientRequestFinished
)
EventSink = Callable[[Event], None]


def discard(_event: Event) -> None:
    """An event sink for callers that only want the result."""
