"""The proxy's use case, without HTTP: an OpenAI request in, its searches run under one shared request layer,
an OpenAI answer (or a stream of chunks) out, and every search's events to whoever watches.

Every client request is admitted only while fewer than `max_queue` are in hand; past that it is refused with a
429 and a Retry-After. The searches of all requests share `--max-concurrent` slots to the upstream, across
upstream models too. A request whose caller goes away is cancelled where it stands: its searches stop and their
slots come back at once (the cancellation reaches the backend's request).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import contextmanager

from engine.backends.factory import open_sampler
from engine.errors import ConfigError, TooLong
from engine.events import ClientRequestFinished, ClientRequestStarted, Event, EventSink
from engine.live import LiveBoard
from engine.proxy.metrics import ProxyMetrics
from engine.proxy.requests import Kind, ProxyError, ProxyLimits, ProxyRequest, model_entries, parse_request
from engine.proxy.responses import answer_text, completion_object, delta_chunk, usage_chunk
from engine.request_layer import RequestLayer
from engine.results import SearchResult
from engine.sampler import Sampler, live_text
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings

KEEPALIVE_S = 1.0  # a stream says it is alive this often while its search runs
LIVE_POLL_S = 0.05  # a greedy or sampled answer's new tokens are looked for this often
BUSY_RETRY_S = 1.0  # what a 429 asks a client to wait

Opener = Callable[[BackendSettings], Awaitable[Sampler]]


class ProxyService:
    def __init__(self, defaults: SearchSettings, backend: BackendSettings, limits: ProxyLimits, *,
                 max_queue: int = 256, opener: Opener = open_sampler):
        self.defaults = defaults
        self.backend = backend
        self.limits = limits
        self.max_queue = max_queue
        self.opener = opener
        self.samplers: dict[str | None, Sampler] = {}
        self.layers: dict[str | None, RequestLayer] = {}
        self._opening: dict[str | None, asyncio.Task] = {}
        self._slots: asyncio.Semaphore | None = None
        self.sinks: list[EventSink] = []
        self.active = 0  # client requests admitted and not yet answered
        self.started: dict[str, tuple[float, str]] = {}  # request id -> (admitted at, spec)
        self.metrics = ProxyMetrics(lambda: self.active,
                                    lambda: sum(layer.waiting for layer in self.layers.values()),
                                    lambda: sum(layer.in_flight for layer in self.layers.values()))

    # Upstreams ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open and probe the proxy's own upstream: a dead endpoint or a missing key fails here, before listening."""
        await self._sampler(None)

    def serves(self, model: str) -> bool:
        """Whether a request may name this upstream model: any name on a remote backend (opened when first asked
        for, a 404 if the upstream does not have it); on the local one, its own model only."""
        if self.backend.backend != "local":
            return True
        own = self.samplers.get(None)
        names = {"local"} | ({own.model_name, own.model_name.removesuffix(".gguf")} if own else set())
        return model in names

    async def _sampler(self, upstream: str | None) -> tuple[Sampler, RequestLayer]:
        key = None if upstream is None or self.backend.backend == "local" or upstream == self.backend.model \
            else upstream
        if key not in self.samplers:
            task = self._opening.get(key)
            if task is None:
                settings = self.backend if key is None else self.backend.replace(model=key, tokenizer=None)
                task = self._opening[key] = asyncio.ensure_future(self.opener(settings))
            try:
                sampler = await asyncio.shield(task)
            except ConfigError as exc:
                self._opening.pop(key, None)
                if key is None:
                    raise
                raise ProxyError(404, f"the upstream cannot serve {key!r}: {exc}", "model", "model_not_found") \
                    from None
            if key not in self.samplers:
                if self._slots is None:
                    self._slots = asyncio.Semaphore(self.backend.max_concurrent)
                self.samplers[key] = sampler
                self.layers[key] = RequestLayer.for_backend(sampler, self.backend, emit=self._emit,
                                                            slots=self._slots)
        return self.samplers[key], self.layers[key]

    async def aclose(self) -> None:
        for sampler in list(self.samplers.values()):
            await sampler.aclose()
        self.samplers.clear()

    # Requests -----------------------------------------------------------------------------------------------

    def models(self) -> list[dict]:
        return model_entries(self.defaults, self.limits)

    def parse(self, kind: Kind, body: object) -> ProxyRequest:
        return parse_request(kind, body, self.defaults, self.limits, self.serves)

    @contextmanager
    def admitted(self):
        """A place among the `max_queue` requests in hand, or a 429."""
        if self.active >= self.max_queue:
            raise ProxyError(429, f"{self.active} requests are in hand already; try again shortly",
                             code="too_many_requests", retry_after=BUSY_RETRY_S)
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def complete(self, request: ProxyRequest) -> dict:
        """The whole answer of a request that does not stream."""
        request_id = _request_id(request)
        results = await self._tracked(request, request_id, self._search_all(request, request_id))
        sampler, _ = await self._sampler(request.upstream)
        return completion_object(request, request_id, results, _piece(sampler))

    async def stream(self, request: ProxyRequest) -> AsyncIterator[dict | None]:
        """The answer's chunks; None while the search runs, for the face to keep the stream alive with. A greedy
        or sampled answer streams its text as it is decoded; a search's answer is known at its end."""
        request_id = _request_id(request)
        boards: list[LiveBoard | None] = [None] * request.n
        sampler, _ = await self._sampler(request.upstream)
        live = request.search.info.width is None  # one continuation is the answer: its tokens are the text
        if live:
            boards = [LiveBoard(sampler.detokenize) for _ in range(request.n)]
        searches = asyncio.ensure_future(self._tracked(request, request_id,
                                                       self._search_all(request, request_id, boards)))
        sent = [""] * request.n
        hold = max((len(stop) for stop in request.search.stop), default=0)
        try:
            for index in range(request.n):
                yield delta_chunk(request, request_id, index, "", role=True)
            while not searches.done():
                await asyncio.wait({searches}, timeout=LIVE_POLL_S if live else KEEPALIVE_S)
                if not live:
                    yield None
                    continue
                for index, board in enumerate(boards):
                    for tokens in board.growing_tokens()[:1]:
                        text = _streamable(live_text(sampler.detokenize(tokens)), request.search.stop, hold)
                        if len(text) > len(sent[index]) and text.startswith(sent[index]):
                            yield delta_chunk(request, request_id, index, text[len(sent[index]):])
                            sent[index] = text
            results = searches.result()
        finally:
            if not searches.done():
                searches.cancel()  # the client left: the searches stop, their slots come back
                await asyncio.gather(searches, return_exceptions=True)
        for index, result in enumerate(results):
            text, finish = answer_text(result, request.search.stop)
            rest = text[len(sent[index]):] if text.startswith(sent[index]) else ""
            if rest:
                yield delta_chunk(request, request_id, index, rest)
            yield delta_chunk(request, request_id, index, None, finish=finish)
        if request.include_usage:
            yield usage_chunk(request, request_id, results)

    async def _tracked(self, request: ProxyRequest, request_id: str, searches: Awaitable[list[SearchResult]]):
        """The searches, framed by the request's own events (the request table folds them) and its metrics."""
        admitted = time.perf_counter()
        first_message = request.search.prompt
        self._emit(ClientRequestStarted(request_id, request.kind, request.model, request.spec, request.n,
                                        request.stream, request.user, first_message[:80]))
        status, error, results = 499, "the client left", []
        try:
            results = await searches
            failed = [r.error for r in results if r.error]
            status, error = (502, failed[0]) if failed and len(failed) == len(results) else (200, None)
            if status != 200:
                raise ProxyError(502, f"the search failed: {failed[0]}", code="search_failed")
            return results
        except TooLong as exc:
            status, error = 422, str(exc)
            raise ProxyError(422, str(exc), "max_tokens", "context_length_exceeded") from None
        except ConfigError as exc:
            status, error = 422, str(exc)
            raise ProxyError(422, str(exc), "model", "invalid_settings") from None
        finally:
            text, finish = answer_text(results[0], request.search.stop) if results else ("", "")
            self._emit(ClientRequestFinished(
                request_id, status, text[:80], sum(r.usage["prompt_tokens"] for r in results),
                sum(r.usage["completion_tokens"] for r in results), finish, error),
                seconds=time.perf_counter() - admitted, spec=request.spec)

    async def _search_all(self, request: ProxyRequest, request_id: str,
                          boards: list[LiveBoard | None] | None = None) -> list[SearchResult]:
        """The request's n searches, together: independent, each with a seed of its own."""
        sampler, layer = await self._sampler(request.upstream)
        base = request.search
        searches = []
        for index in range(request.n):
            settings = base if base.seed is None or request.n == 1 else base.replace(seed=(base.seed + index) % 2**63)
            board = boards[index] if boards else None
            searches.append(run_search(settings, sampler, self.backend, self._emit, run_id=f"{request_id}/{index}",
                                       layer=layer, prompt=request.prompt, board=board,
                                       watch_growth=board is not None))
        return list(await asyncio.gather(*searches))

    def _emit(self, event: Event, *, seconds: float | None = None, spec: str = "") -> None:
        if isinstance(event, ClientRequestStarted):
            self.started[event.run_id] = (time.perf_counter(), event.spec)
        elif isinstance(event, ClientRequestFinished):
            _, spec = self.started.pop(event.run_id, (0.0, spec))
        self.metrics.observe(event, spec, seconds)
        for sink in list(self.sinks):
            sink(event)


def _request_id(request: ProxyRequest) -> str:
    prefix = "chatcmpl" if request.kind == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _piece(sampler: Sampler) -> Callable[[int], str]:
    """A token's own text, for logprobs."""
    return lambda token: sampler.detokenize([token])


def _streamable(text: str, stops: tuple[str, ...], hold: int) -> str:
    """What of a growing answer may go out now: nothing from a stop string on, and the last characters held
    back while they could still begin one."""
    cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
    if cut >= 0:
        return text[:cut]
    return text[:len(text) - hold] if hold else text

