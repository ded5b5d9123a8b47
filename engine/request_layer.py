"""The one request layer every backend goes through: a real concurrency cap, timeouts, retries, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import BackendError
from engine.events import EventSink, RequestFinished, RequestRetried, RequestStarted, discard
from engine.sampler import Continuation, Sampler, SampleRequest
from engine.settings import BackendSettings

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0
LATENCY_WINDOW = 1024  # requests the latency percentiles look back over: memory stays flat on a million


class LatencyWindow:
    """Percentiles of the most recent request latencies, in bounded memory."""

    def __init__(self, size: int = LATENCY_WINDOW):
        self.values: deque[float] = deque(maxlen=size)

    def add(self, latency_s: float) -> None:
        self.values.append(latency_s)

    def percentiles(self) -> tuple[float, float] | None:
        """(p50, p95) over the window, or None before the first request."""
        if not self.values:
            return None
        ordered = sorted(self.values)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        return pick(0.5), pick(0.95)


@dataclass
class RequestStats:
    """Running totals over every request the layer has sent."""

    requests: int = 0  # logical requests finished, successful or not
    attempts: int = 0
    retries: int = 0
    failures: int = 0  # requests that failed for good
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sum_latency_s: float = 0.0
    peak_in_flight: int = 0
    # Per endpoint, when requests are spread over several: answered requests, their tokens and latency, and
    # failed attempts (a retried request may fail on one endpoint and be answered by another).
    endpoints: dict[str, dict[str, float]] = field(default_factory=dict)

    def totals(self) -> dict:
        """The running totals alone: cheap enough to take around every search."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "endpoints"}
        data["endpoints"] = {url: dict(counts) for url, counts in self.endpoints.items()}
        return data

    def count_endpoint(self, url: str | None, *, completion_tokens: int = 0, latency_s: float = 0.0,
                       failed: bool = False) -> None:
        if url is None:
            return
        counts = self.endpoints.setdefault(url, {"requests": 0, "completion_tokens": 0, "sum_latency_s": 0.0,
                                                 "failed_attempts": 0})
        if failed:
            counts["failed_attempts"] += 1
        else:
            counts["requests"] += 1
            counts["completion_tokens"] += completion_tokens
            counts["sum_latency_s"] = round(counts["sum_latency_s"] + latency_s, 4)


@dataclass(frozen=True)
class RequestTag:
    """Where a request belongs, so its events can be placed: the run, and the round within it. `stats`, when
    given, counts the request a second time for its owner, so a search sharing the layer (eval) knows its own."""

    run_id: str = ""
    round: int = 0
    stats: RequestStats | None = field(default=None, compare=False)
    emit: EventSink | None = field(default=None, compare=False)  # where its events go; None: the layer's sink


def backoff_delay(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    delay = rng.uniform(0, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


class RequestLayer:
    """Sends sample requests to a backend under one cap, with one retry policy and one set of metrics.

    The cap holds each attempt, not each backoff sleep, so retries never push the backend past it.
    """

    def __init__(
        self,
        sampler: Sampler,
        *,
        max_concurrent: int,
        timeout: float,
        max_retries: int,
        emit: EventSink = discard,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.perf_counter,
        slots: asyncio.Semaphore | None = None,
    ):
        self.sampler = sampler
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        # A backend whose SDK retries on its own must not be retried again on top.
        self.max_retries = 0 if sampler.retries_inside else max_retries
        # A backend that bounds its own waiting (the local decoder: no progress, not slow progress) gets no
        # per-attempt deadline on top.
        self.times_itself = sampler.times_itself
        self.emit = emit
        self.rng = rng or random.Random()
        self.clock = clock
        self.stats = RequestStats()
        self.in_flight = 0
        self.waiting = 0  # attempts waiting for a slot
        # Layers of several backends (the proxy's upstream models) may share one cap.
        self._slots = slots or asyncio.Semaphore(max_concurrent)
        self._ids = itertools.count(1)

    @classmethod
    def for_backend(cls, sampler: Sampler, settings: BackendSettings, *, seed: int | None = None,
                    emit: EventSink = discard, slots: asyncio.Semaphore | None = None) -> RequestLayer:
        """The layer a backend's settings call for: their cap, timeout and retries; `seed` fixes the backoff;
        `slots` shares the cap with other layers."""
        return cls(sampler, max_concurrent=settings.max_concurrent, timeout=settings.timeout,
                   max_retries=settings.max_retries, emit=emit, rng=random.Random(seed), slots=slots)

    async def sample(
        self, request: SampleRequest, tag: RequestTag = RequestTag(), *, sequential: bool = False
    ) -> list[Continuation]:
        """All `request.n` continuations: split into single requests when the backend ignores `n`, and into
        requests of at most `max_n` when it caps `n`.

        Raises BackendError only when nothing came back; a partial result is returned and its losses counted.
        """
        cap = self.sampler.max_n
        if cap is not None and request.n > cap:
            parts = [
                self.sample(_part(request, start, min(cap, request.n - start)), tag, sequential=sequential)
                for start in range(0, request.n, cap)
            ]
            return await self._gather_parts(parts, sequential)
        done: list[Continuation] = []
        if self.sampler.honours_n or request.n == 1:
            done = await self.send(request, tag)
            if len(done) >= request.n:
                return done[: request.n]
            if self.sampler.honours_n:
                raise BackendError(f"backend returned {len(done)} of {request.n} continuations", transient=False)
        parts = [self.send(_part(request, index, 1), tag) for index in range(len(done), request.n)]
        return done + await self._gather_parts(parts, sequential)

    async def _gather_parts(self, parts: list, sequential: bool) -> list[Continuation]:
        if sequential:
            results = [await settle(part) for part in parts]
        else:
            results = await asyncio.gather(*parts, return_exceptions=True)
        done: list[Continuation] = []
        errors: list[BackendError] = []
        for result in results:
            if isinstance(result, BackendError):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                done.extend(result)
        if not done and errors:
            raise errors[0]
        return done

    async def send(self, request: SampleRequest, tag: RequestTag = RequestTag()) -> list[Continuation]:
        """One request, retried on transient failures, under the cap. No splitting."""
        request_id = next(self._ids)
        attempt = 0
        while True:
            attempt += 1
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
            try:
                self.in_flight += 1
                for stats in self._counters(tag):
                    stats.attempts += 1
                self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)
                (tag.emit or self.emit)(RequestStarted(tag.run_id, tag.round, request_id, self.in_flight))
                started = self.clock()
                error: BackendError | None = None
                try:
                    async with asyncio.timeout(None if self.times_itself else self.timeout):
                        continuations = await self.sampler.sample(request)
                    _check_logprobs(continuations)
                except TimeoutError:
                    error = BackendError(f"timed out after {self.timeout:g}s", transient=True)
                except BackendError as exc:
                    error = exc
                finally:
                    self.in_flight -= 1
                latency = self.clock() - started
            finally:
                self._slots.release()
            if error is None:
                self._record(request_id, tag, request, latency, attempt, continuations)
                return continuations
            if not error.transient or attempt > self.max_retries:
                self._record(request_id, tag, request, latency, attempt, None, error)
                raise error
            delay = backoff_delay(attempt, error.retry_after, self.rng)
            for stats in self._counters(tag):
                stats.retries += 1
                stats.count_endpoint(error.endpoint, failed=True)
            retried = RequestRetried(tag.run_id, tag.round, request_id, attempt, str(error), delay, error.endpoint)
            (tag.emit or self.emit)(retried)
            await asyncio.sleep(delay)

    def _counters(self, tag: RequestTag) -> tuple[RequestStats, ...]:
        return (self.stats,) if tag.stats is None else (self.stats, tag.stats)

    def _record(
        self,
        request_id: int,
        tag: RequestTag,
        request: SampleRequest,
        latency: float,
        attempt: int,
        continuations: list[Continuation] | None,
        error: BackendError | None = None,
    ) -> None:
        completion = sum(len(c.token_ids) for c in continuations or ())
        prompt = len(request.prompt_ids) if continuations else 0
        for stats in self._counters(tag):
            stats.requests += 1
            stats.sum_latency_s += latency
            stats.prompt_tokens += prompt
            stats.completion_tokens += completion
            stats.failures += error is not None
            if error is not None:
                stats.count_endpoint(error.endpoint, failed=True)
            else:
                stats.count_endpoint(continuations[0].endpoint if continuations else None,
                                     completion_tokens=completion, latency_s=latency)
        (tag.emit or self.emit)(
            RequestFinished(
                tag.run_id, tag.round, request_id, latency, prompt, completion, attempt - 1, self.in_flight,
                None if error is None else str(error),
                error.endpoint if error is not None else continuations[0].endpoint if continuations else None,
            )
        )


def _check_logprobs(continuations: list[Continuation]) -> None:
    for continuation in continuations:
        if len(continuation.logprobs) != len(continuation.token_ids):
            raise BackendError(
                "the endpoint returned no per-token logprobs, which beam search needs to score candidates",
                transient=False,
            )


def _part(request: SampleRequest, index: int, n: int) -> SampleRequest:
    """Continuations index.. of a request, as a request of their own with a seed of their own."""
    if index == 0 and n == request.n:
        return request
    seed = None if request.seed is None else (request.seed * 1_000_003 + index) % 2**31
    watch = request.watch
    if watch is not None:
        watch = functools.partial(_shifted_watch, watch, index)
    return dataclasses.replace(request, n=n, seed=seed, watch=watch)


def _shifted_watch(watch, offset: int, index: int, tokens: list[int], logprobs: list[float]) -> None:
    watch(offset + index, tokens, logprobs)


async def settle(awaitable):
    """Await like gather(return_exceptions=True) does, for one awaitable."""
    try:
        return await awaitable
    except Exception as exc:
        return exc
