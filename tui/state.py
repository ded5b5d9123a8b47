"""What the dashboard knows about one run, folded from the engine's events. Plain Python: no widgets here."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.events import (
    BlockFinished,
    BlockStarted,
    CandidatesScored,
    Event,
    RequestFinished,
    RequestRetried,
    RequestStarted,
    SearchFinished,
    SearchStarted,
)
from engine.search import TEXT_TAIL_CHARS, SearchResult
from engine.settings import BackendSettings, SearchSettings

RATE_WINDOW_S = 60
LATENCY_SAMPLES = 1000
PRUNED_VISIBLE_S = 1.5


@dataclass(frozen=True)
class BeamRow:
    score: float
    mean_logprob: float
    tokens: int
    finished: bool
    text_tail: str
    pruned: bool = False


@dataclass(frozen=True)
class BlockRow:
    block: int
    wall_s: float
    sum_request_s: float
    requests: int
    failed: int

    @property
    def speedup(self) -> float:
        return self.sum_request_s / self.wall_s if self.wall_s else 0.0

    def best_wall_s(self, cap: int) -> float:
        """The wall time if the block's requests had run perfectly in parallel under the cap."""
        return self.sum_request_s / max(1, min(self.requests, cap))


@dataclass
class RunState:
    run_id: str
    search: SearchSettings
    backend: BackendSettings
    clock: Callable[[], float] = time.monotonic
    status: str = "starting"  # idle | starting | running | finished | failed | cancelled
    seed: int | None = None
    block: int = 0
    max_blocks: int = 0
    in_flight: int = 0
    requests_done: int = 0
    retries: int = 0
    failures: int = 0
    tokens: int = 0
    beams: list[BeamRow] = field(default_factory=list)
    pruned_until: float = 0.0
    blocks: list[BlockRow] = field(default_factory=list)
    best_text: str = ""
    best_score: float | None = None
    result: SearchResult | None = None
    error: str | None = None
    started_at: float = 0.0
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    completions: deque = field(default_factory=deque)  # (time, tokens) of finished requests, last minute
    log: list[str] = field(default_factory=list)  # new lines, drained by the log panel

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.max_blocks = self.search.max_blocks

    @property
    def cap(self) -> int:
        return self.backend.max_concurrent

    @property
    def finished(self) -> bool:
        return self.status in ("finished", "failed", "cancelled")

    def apply(self, event: Event) -> None:
        now = self.clock()
        if isinstance(event, SearchStarted):
            self.status = "running"
            self.seed = event.seed
            self.say(f"search {event.run_id} started on {event.backend}: seed {event.seed}, "
                     f"{event.prompt_tokens} prompt tokens, cap {event.max_concurrent}")
        elif isinstance(event, BlockStarted):
            self.block = event.block
            self.beams = [row for row in self.beams if not row.pruned]
        elif isinstance(event, RequestStarted):
            self.in_flight = event.in_flight
        elif isinstance(event, RequestRetried):
            self.retries += 1
            self.say(f"request {event.request_id} retried after attempt {event.attempt} ({event.reason}); "
                     f"waiting {event.delay_s:.1f}s")
        elif isinstance(event, RequestFinished):
            self._request_finished(event, now)
        elif isinstance(event, CandidatesScored):
            self.beams = [
                BeamRow(c.score, c.mean_logprob, c.tokens, c.finished, c.text_tail, pruned=not c.kept)
                for c in event.candidates
            ]
            self.pruned_until = now + PRUNED_VISIBLE_S
        elif isinstance(event, BlockFinished):
            row = BlockRow(event.block, event.wall_s, event.sum_request_s, event.requests, event.failed)
            self.blocks.append(row)
            self.best_text, self.best_score = event.best_text, event.best_score
            self.say(f"block {event.block}/{self.max_blocks}: {_plural(event.requests, 'request')} in "
                     f"{event.wall_s:.2f}s (one at a time: {event.sum_request_s:.2f}s, x{row.speedup:.1f})"
                     + (f", {event.failed} failed" if event.failed else ""))
        elif isinstance(event, SearchFinished):
            self._search_finished(event.result)

    def _request_finished(self, event: RequestFinished, now: float) -> None:
        self.in_flight = event.in_flight
        self.requests_done += 1
        self.latencies.append(event.latency_s)
        self.tokens += event.completion_tokens
        self.completions.append((now, event.completion_tokens))
        if event.error:
            self.failures += 1
            self.say(f"request {event.request_id} failed after {event.retries} retries: {event.error}")

    def _search_finished(self, result: SearchResult) -> None:
        self.result = result
        self.in_flight = 0
        # The final ranking: beams that finished in earlier blocks compete with the last block's survivors.
        self.beams = [BeamRow(b.score, b.mean_logprob, b.length, b.finished, b.text[-TEXT_TAIL_CHARS:])
                      for b in result.beams]
        if result.best is not None:
            self.best_text, self.best_score = result.best.text, result.best.score
        if result.error:
            self.fail(result.error)
        else:
            self.status = "finished"
            why = "every beam finished" if result.stop_reason == "finished" else "max tokens reached"
            self.say(f"search finished, {why}, in {result.wall_s:.2f}s: best score {self.best_score:.4f}, "
                     f"{result.requests} requests, {result.usage['retries']} retries")

    def fail(self, message: str) -> None:
        self.status = "failed"
        self.error = message
        self.in_flight = 0
        self.say(f"error: {message}")

    def cancel(self) -> None:
        if self.status in ("starting", "running"):
            self.status = "cancelled"
            self.say(f"search {self.run_id} cancelled")

    def say(self, line: str) -> None:
        self.log.append(line)

    def visible_beams(self) -> list[BeamRow]:
        """Kept beams, plus this block's pruned ones for a moment after scoring."""
        if self.clock() < self.pruned_until:
            return self.beams
        return [row for row in self.beams if not row.pruned]

    def rates(self, window_s: float = 10.0) -> tuple[float, float]:
        """Tokens per second and requests per second over the last `window_s` seconds."""
        now = self.clock()
        self._forget(now)
        span = min(window_s, max(now - self.started_at, 1e-9))
        recent = [(t, n) for t, n in self.completions if now - t <= window_s]
        return sum(n for _, n in recent) / span, len(recent) / span

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

    def latency_percentiles(self) -> tuple[float, float] | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        return pick(0.5), pick(0.95)

    def _forget(self, now: float) -> None:
        while self.completions and now - self.completions[0][0] > RATE_WINDOW_S:
            self.completions.popleft()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
