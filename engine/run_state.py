"""What is known about one run, folded from its events: the one place events become state.

The TUI's panels, `beamtui run`'s progress line and the tests all read a RunState; none folds events itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.events import (
    CandidatesGrowing,
    Event,
    LiveCandidate,
    Member,
    PopulationUpdated,
    RequestFinished,
    RequestRetried,
    RequestStarted,
    RoundFinished,
    RoundStarted,
    SearchFinished,
    SearchStarted,
)
from engine.request_layer import LatencyWindow
from engine.results import RoundTiming, SearchResult, answer_is
from engine.settings import BackendSettings, SearchSettings

RATE_WINDOW_S = 60
DROPPED_VISIBLE_S = 1.5  # pruned, resampled-away and rejected members stay on screen this long
MAX_TREE_NODES = 4000  # a long wide search keeps its most recent nodes; the tree shows far fewer


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Cancelled:
    run_id: str


@dataclass(frozen=True)
class RoundLogged:
    timing: RoundTiming
    max_blocks: int


# What the run's log holds, for a consumer to put in words: its start, retries, rounds, failed requests, its end.
LogEntry = SearchStarted | RequestRetried | RequestFinished | RoundLogged | SearchResult | Failed | Cancelled | Note


@dataclass(frozen=True)
class TreeNode:
    node: int
    parent: int
    block: int
    status: str
    score: float
    tokens: int
    text_tail: str


@dataclass
class EndpointTally:
    """One endpoint's share of the run, when requests are spread over several."""

    requests: int = 0
    tokens: int = 0
    failed_attempts: int = 0
    failed_in_a_row: int = 0
    latencies: LatencyWindow = field(default_factory=lambda: LatencyWindow(256))
    answered_at: deque = field(default_factory=lambda: deque(maxlen=4096))  # times of its recent answers

    def requests_per_s(self, now: float, since: float, window_s: float = 10.0) -> float:
        span = min(window_s, max(now - since, 1e-9))
        return sum(1 for t in self.answered_at if now - t <= window_s) / span

    @property
    def health(self) -> str:
        return "answering" if not self.failed_in_a_row else f"{self.failed_in_a_row} failed in a row"


@dataclass
class RunState:
    run_id: str
    search: SearchSettings
    backend: BackendSettings
    clock: Callable[[], float] = time.monotonic
    status: str = "starting"  # idle | starting | running | finished | failed | cancelled
    seed: int | None = None
    approximate: bool = False
    answer_is: str = ""  # what the answer will be: a draw from p^alpha, a mode-seeking choice, a heuristic's
    answer_kind: str = ""  # the same, short
    round: int = 0
    block: int = 0
    max_blocks: int = 0
    stage: str = ""
    in_flight: int = 0
    requests_done: int = 0
    retries: int = 0
    failures: int = 0
    tokens: int = 0
    population: list[Member] = field(default_factory=list)  # best first, then what the last round dropped
    dropped_until: float = 0.0
    growing: tuple[LiveCandidate, ...] = ()  # the round's continuations as they are generated
    ess: float | None = None  # of the weights the last block left, before any resampling
    resampled: bool = False  # the last block ended in resampling: the weights shown are the equal ones after it
    resamples: int = 0
    proposed: int = 0
    accepted: int = 0
    tree: dict[int, TreeNode] = field(default_factory=dict)
    rounds: list[RoundTiming] = field(default_factory=list)
    best_text: str = ""
    best_score: float | None = None
    result: SearchResult | None = None
    error: str | None = None
    started_at: float = 0.0
    latencies: LatencyWindow = field(default_factory=LatencyWindow)
    completions: deque = field(default_factory=deque)  # (time, tokens) as they were generated, last minute
    answered: deque = field(default_factory=deque)  # times requests finished, last minute
    # This round's tokens: from finished requests, from the growing continuations, and the most already counted.
    round_finished_tokens: int = 0
    round_streamed_tokens: int = 0
    round_counted_tokens: int = 0
    endpoints: dict[str, EndpointTally] = field(default_factory=dict)  # by base URL, with several endpoints
    log: list[tuple[float, LogEntry]] = field(default_factory=list)  # (clock, entry) not shown yet; the reader drains

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.max_blocks = self.search.max_blocks

    @property
    def cap(self) -> int:
        return self.backend.max_concurrent

    @property
    def finished(self) -> bool:
        return self.status in ("finished", "failed", "cancelled")

    @property
    def blocks_done(self) -> int:
        return max((row.block for row in self.rounds), default=0)

    @property
    def answer_tokens(self) -> int:
        """Tokens of the longest answer alive, growing ones included."""
        kept = (m.tokens for m in self.population if m.status in ("kept", "finished"))
        return max(max(kept, default=0), max((c.total_tokens for c in self.growing), default=0))

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    def apply(self, event: Event) -> None:
        now = self.clock()
        if isinstance(event, SearchStarted):
            self.status = "running"
            self.seed = event.seed
            self.approximate = event.approximate
            self.answer_is = answer_is(event.settings)
            self.answer_kind = self.answer_is.partition(":")[0]
            self._log(event)
        elif isinstance(event, RoundStarted):
            self.round, self.block, self.max_blocks, self.stage = event.round, event.block, event.max_blocks, \
                event.stage
            self.growing = ()
            self.round_finished_tokens = self.round_streamed_tokens = self.round_counted_tokens = 0
        elif isinstance(event, RequestStarted):
            self.in_flight = event.in_flight
        elif isinstance(event, RequestRetried):
            self.retries += 1
            if event.endpoint:
                tally = self.endpoints.setdefault(event.endpoint, EndpointTally())
                tally.failed_attempts += 1
                tally.failed_in_a_row += 1
            self._log(event)
        elif isinstance(event, RequestFinished):
            self._request_finished(event, now)
        elif isinstance(event, CandidatesGrowing):
            if event.round == self.round:
                self.growing = event.candidates
                self.round_streamed_tokens = sum(c.tokens for c in event.candidates)
                self._count_tokens(now)
        elif isinstance(event, PopulationUpdated):
            self._population(event, now)
        elif isinstance(event, RoundFinished):
            row = RoundTiming(event.round, event.block, self.stage, event.wall_s, event.sum_request_s,
                              event.requests, event.failed, event.tokens)
            self._count_tokens(now, event.tokens)
            self.rounds.append(row)
            self.best_text, self.best_score = event.best_text, event.best_score
            self._log(RoundLogged(row, self.max_blocks))
        elif isinstance(event, SearchFinished):
            self._search_finished(event.result)

    def _request_finished(self, event: RequestFinished, now: float) -> None:
        self.in_flight = event.in_flight
        self.requests_done += 1
        self.latencies.add(event.latency_s)
        self.round_finished_tokens += event.completion_tokens
        self._count_tokens(now)
        self.answered.append(now)
        if event.endpoint:
            tally = self.endpoints.setdefault(event.endpoint, EndpointTally())
            if event.error:
                tally.failed_attempts += 1
                tally.failed_in_a_row += 1
            else:
                tally.requests += 1
                tally.tokens += event.completion_tokens
                tally.failed_in_a_row = 0
                tally.latencies.add(event.latency_s)
                tally.answered_at.append(now)
        if event.error:
            self.failures += 1
            self._log(event)

    def _count_tokens(self, now: float, known: int | None = None) -> None:
        """Count the round's tokens as they are generated, not when their request ends: what the growing
        continuations hold (streaming backends) or what finished requests brought, whichever is more, and at the
        round's end its exact total."""
        if known is None:
            known = max(self.round_finished_tokens, self.round_streamed_tokens)
        new = known - self.round_counted_tokens
        if new > 0:
            self.tokens += new
            self.completions.append((now, new))
            self.round_counted_tokens = known

    def _population(self, event: PopulationUpdated, now: float) -> None:
        self.population = list(event.members)
        self.growing = ()
        self.dropped_until = now + DROPPED_VISIBLE_S
        if event.ess is not None:
            self.ess = event.ess
        self.resampled = event.resampled
        self.resamples += event.resampled
        for member in event.members:
            if member.status in ("accepted", "rejected"):
                self.proposed += 1
                self.accepted += member.status == "accepted"
            old = self.tree.get(member.node)
            if old is None or old.status != member.status:
                self.tree[member.node] = TreeNode(member.node, member.parent, event.block, member.status,
                                                  member.score, member.tokens, member.text_tail)
        while len(self.tree) > MAX_TREE_NODES:
            del self.tree[next(iter(self.tree))]

    def _search_finished(self, result: SearchResult) -> None:
        self.result = result
        self.in_flight = 0
        self.growing = ()
        self.dropped_until = 0.0  # the final view is the final population
        answer = result.answer
        if answer is not None:
            self.best_text, self.best_score = answer.text, answer.score
        self.approximate = result.approximate
        if result.error:
            self.fail(result.error)
            return
        self.status = "finished"
        self._log(result)

    def fail(self, message: str) -> None:
        self.status = "failed"
        self.error = message
        self.in_flight = 0
        self._log(Failed(message))

    def cancel(self) -> None:
        if self.status in ("starting", "running"):
            self.status = "cancelled"
            self._log(Cancelled(self.run_id))

    def note(self, text: str) -> None:
        """A line of the consumer's own in the run's log (the dashboard: what it started, where it saved)."""
        self._log(Note(text))

    def _log(self, entry: LogEntry) -> None:
        self.log.append((self.clock(), entry))

    def visible_members(self) -> list[Member]:
        """The live population, plus what the last round dropped, for a moment after it happened."""
        if self.clock() < self.dropped_until:
            return self.population
        return [m for m in self.population if m.status in ("kept", "finished")]

    def endpoint_rates(self) -> dict[str, float]:
        """Requests per second each endpoint answered over the last 10 seconds."""
        now = self.clock()
        return {url: tally.requests_per_s(now, self.started_at) for url, tally in self.endpoints.items()}

    def rates(self, window_s: float = 10.0) -> tuple[float, float]:
        """Tokens per second and requests per second over the last `window_s` seconds."""
        now = self.clock()
        self._forget(now)
        span = min(window_s, max(now - self.started_at, 1e-9))
        tokens = sum(n for t, n in self.completions if now - t <= window_s)
        return tokens / span, sum(1 for t in self.answered if now - t <= window_s) / span

    def token_rate_history(self, buckets: int = RATE_WINDOW_S) -> list[float]:
        """Tokens per second in each of the last `buckets` seconds, oldest first."""
        now = self.clock()
        self._forget(now)
        history = [0.0] * buckets
        for t, n in self.completions:
            age = int(now - t)
            if age < buckets:
                history[buckets - 1 - age] += n
        return history

    def _forget(self, now: float) -> None:
        while self.completions and now - self.completions[0][0] > RATE_WINDOW_S:
            self.completions.popleft()
        while self.answered and now - self.answered[0] > RATE_WINDOW_S:
            self.answered.popleft()
