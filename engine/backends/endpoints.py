"""Several OpenAI-compatible endpoints behind one sampler: replicas of one model, spread over like a good client.

The request layer above keeps the global cap, timeouts and retries. Here each attempt goes to one endpoint:
- least outstanding requests, weighted by observed latency: the endpoint whose queue would clear soonest;
- an optional per-endpoint cap;
- an endpoint that fails `FAILURES_TO_REST` times in a row rests for a cool-down (doubling while it keeps
  failing), then gets one request at a time until one succeeds; a retried request is steered away from it.
At start-up every endpoint is probed, and all must serve the same model with the same tokenizer and the same kind
of logprobs, or a ConfigError names the odd one out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.backends.openai_compat import PROBE_MESSAGES, PROBE_REQUESTS, OpenAISampler
from engine.errors import BackendError, ConfigError
from engine.request_layer import RequestLayer
from engine.sampler import Continuation, LogprobQuality, Message, SamplerDefaults, SampleRequest, Send
from engine.scoring import endpoint_score

FAILURES_TO_REST = 3
FIRST_REST_S = 2.0
LONGEST_REST_S = 30.0
LATENCY_MEMORY = 0.2  # weight of the newest latency in the moving average
# Replicas on different CPUs or GPUs differ in float kernels: llama.cpp's server against our embedded model
# differed by at most 0.25 nats per token (benchmarks.logprob_agreement); another model differs by far more.
SAME_MODEL_NATS = 0.5
QUALITY_RANK = {"exact": 0, "estimated": 1, "unavailable": 2}


@dataclass
class Endpoint:
    sampler: OpenAISampler
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    completion_tokens: int = 0
    latency_s: float | None = None  # moving average of successful requests' latencies
    failed_in_a_row: int = 0
    rests: int = 0  # cool-downs so far
    resting_until: float = 0.0

    @property
    def url(self) -> str:
        return self.sampler.base_url

    def health(self, now: float) -> str:
        if now < self.resting_until:
            return "resting"
        return "trial" if self.failed_in_a_row >= FAILURES_TO_REST else "up"

    def describe(self, now: float) -> dict:
        """What start-up found the endpoint supports, and how its requests have done since."""
        sampler = self.sampler
        return {"base_url": self.url, "honours_n": sampler.honours_n, "token_prompts": sampler.token_prompts,
                "streams": bool(sampler.streams), "logprobs": "processed" if sampler.processed else "raw",
                "top_alternatives": sampler.alternatives, "attempts": self.requests, "failures": self.failures,
                "completion_tokens": self.completion_tokens,
                "mean_latency_s": None if self.latency_s is None else round(self.latency_s, 4),
                "rests": self.rests, "health": self.health(now)}


class EndpointPool(SamplerDefaults):
    """A Sampler over several endpoints of one model."""

    name = "openai"

    def __init__(self, samplers: Sequence[OpenAISampler], *, endpoint_max_concurrent: int | None, timeout: float,
                 max_retries: int, max_concurrent: int, clock: Callable[[], float] = time.monotonic):
        self.endpoints = [Endpoint(sampler) for sampler in samplers]
        self.max_concurrent = max_concurrent
        self.endpoint_max_concurrent = endpoint_max_concurrent
        self.timeout = timeout
        self.max_retries = max_retries
        self.clock = clock
        self._waiting: list[asyncio.Future] = []  # attempts waiting for an endpoint's slot

    # What every endpoint shares: the model, its tokenizer and chat template.
    @property
    def tokenizer(self):
        return self.endpoints[0].sampler.tokenizer

    @property
    def model_name(self) -> str:
        return self.endpoints[0].sampler.model_name

    @property
    def honours_n(self) -> bool:
        return all(endpoint.sampler.honours_n for endpoint in self.endpoints)

    @property
    def max_sequence_tokens(self) -> int | None:
        """The smallest any endpoint declared: a request may go to any of them."""
        known = [e.sampler.max_sequence_tokens for e in self.endpoints if e.sampler.max_sequence_tokens]
        return min(known, default=None)

    def tokenize(self, text: str) -> list[int]:
        return self.endpoints[0].sampler.tokenize(text)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.endpoints[0].sampler.detokenize(token_ids)

    def is_end(self, token_id: int) -> bool:
        return self.endpoints[0].sampler.is_end(token_id)

    def render_chat(self, messages: Sequence[Message]) -> list[int]:
        return self.endpoints[0].sampler.render_chat(messages)

    def render_prompt(self, prompt: str) -> list[int]:
        return self.endpoints[0].sampler.render_prompt(prompt)

    @property
    def chat_template(self) -> str:
        return self.endpoints[0].sampler.chat_template

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        """The weakest of the endpoints' (they agree on raw or processed logprobs; alternatives may differ)."""
        qualities = [endpoint.sampler.logprob_quality(temperature) for endpoint in self.endpoints]
        return LogprobQuality(max((q.logp for q in qualities), key=QUALITY_RANK.__getitem__),
                              max((q.logq for q in qualities), key=QUALITY_RANK.__getitem__))

    def describe(self) -> list[dict]:
        now = self.clock()
        return [endpoint.describe(now) for endpoint in self.endpoints]

    async def start(self, send: Send) -> None:
        """Probe every endpoint on its own (each through its own retrying layer), then check they agree."""
        layers = [RequestLayer(e.sampler, max_concurrent=4, timeout=self.timeout, max_retries=self.max_retries)
                  for e in self.endpoints]
        # An endpoint's start-up sends PROBE_REQUESTS at once; as many endpoints start together as the global cap
        # holds, so start-up keeps to it too.
        starting = asyncio.Semaphore(max(1, self.max_concurrent // PROBE_REQUESTS))

        async def start(endpoint: Endpoint, layer: RequestLayer) -> None:
            async with starting:
                await endpoint.sampler.start(layer.send)

        await asyncio.gather(*(start(e, layer) for e, layer in zip(self.endpoints, layers, strict=True)))
        kinds = {e.url: "processed" if e.sampler.processed else "raw" for e in self.endpoints}
        odd = odd_ones_out(list(kinds), lambda a, b: kinds[a] == kinds[b])
        if odd:
            raise ConfigError(f"{' and '.join(odd)} {'return' if len(odd) > 1 else 'returns'} "
                              f"{kinds[odd[0]]} logprobs and the other endpoints do not: their scores cannot be "
                              f"compared")
        prompt = tuple(self.render_chat(PROBE_MESSAGES))
        greedy = SampleRequest(prompt, n=1, max_tokens=1, temperature=0.0, seed=0, messages=PROBE_MESSAGES,
                               prompt_len=len(prompt))
        watched = replace(greedy, watch=lambda *update: None)  # finds out who streams (token-prompt servers do)
        answers, _ = await asyncio.gather(
            asyncio.gather(*(layer.send(greedy) for layer in layers)),
            asyncio.gather(*(layer.send(watched) for e, layer in zip(self.endpoints, layers, strict=True)
                             if e.sampler.token_prompts and e.sampler.api == "completions")))
        first = {e.url: (a[0].token_ids[:1], a[0].logprobs[:1]) for e, a in zip(self.endpoints, answers, strict=True)}
        odd = odd_ones_out(list(first), lambda a, b: same_model(first[a], first[b]))
        if odd:
            shown = "; ".join(f"{url}: token {first[url][0]} log p {_nats(first[url][1])}" for url in first)
            raise ConfigError(f"{' and '.join(odd)} {'serve' if len(odd) > 1 else 'serves'} another model or "
                              f"tokenizer than the other endpoints (greedy first token of a fixed prompt: {shown})")

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        endpoint = await self._take()
        started = self.clock()
        try:
            continuations = await endpoint.sampler.sample(request)
        except BackendError as exc:
            self._failed(endpoint)
            raise _on(exc, endpoint.url) from None
        except asyncio.CancelledError:
            if self.clock() - started >= self.timeout * 0.99:  # the layer's timeout: a hung endpoint
                self._failed(endpoint)
            raise
        finally:
            endpoint.outstanding -= 1
            self._release()
        self._succeeded(endpoint, self.clock() - started, continuations)
        return [replace(c, endpoint=endpoint.url) for c in continuations]

    async def _take(self) -> Endpoint:
        while (endpoint := self._choose()) is None:
            freed = asyncio.get_running_loop().create_future()
            self._waiting.append(freed)
            await freed
        endpoint.outstanding += 1
        endpoint.requests += 1
        return endpoint

    def _choose(self) -> Endpoint | None:
        now = self.clock()
        cap = self.endpoint_max_concurrent
        open_ = [e for e in self.endpoints if cap is None or e.outstanding < cap]
        healthy = [e for e in open_ if e.health(now) == "up"
                   or (e.health(now) == "trial" and e.outstanding == 0)]
        if not healthy and all(e.health(now) != "up" for e in self.endpoints):
            healthy = open_  # every endpoint is failing: keep trying them rather than stall
        if not healthy:
            return None
        known = [e.latency_s for e in self.endpoints if e.latency_s is not None]
        default = min(known) if known else 1.0  # an endpoint not yet measured is taken to be as fast as the best
        return min(healthy, key=lambda e: endpoint_score(e.outstanding, e.latency_s or default, e.failed_in_a_row))

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for freed in waiting:
            if not freed.done():
                freed.set_result(None)

    def _succeeded(self, endpoint: Endpoint, latency: float, continuations: list[Continuation]) -> None:
        endpoint.failed_in_a_row = 0
        endpoint.resting_until = 0.0
        endpoint.completion_tokens += sum(len(c.token_ids) for c in continuations)
        previous = endpoint.latency_s
        endpoint.latency_s = latency if previous is None else (1 - LATENCY_MEMORY) * previous + LATENCY_MEMORY * latency

    def _failed(self, endpoint: Endpoint) -> None:
        endpoint.failures += 1
        endpoint.failed_in_a_row += 1
        if endpoint.failed_in_a_row >= FAILURES_TO_REST and self.clock() >= endpoint.resting_until:
            rest = min(LONGEST_REST_S, FIRST_REST_S * 2 ** endpoint.rests)
            endpoint.rests += 1
            endpoint.resting_until = self.clock() + rest

    async def aclose(self) -> None:
        await asyncio.gather(*(endpoint.sampler.aclose() for endpoint in self.endpoints))


def same_model(a: tuple, b: tuple) -> bool:
    (tokens_a, logp_a), (tokens_b, logp_b) = a, b
    return tokens_a == tokens_b and all(abs(x - y) <= SAME_MODEL_NATS for x, y in zip(logp_a, logp_b, strict=True))


def odd_ones_out(names: list[str], agree: Callable[[str, str], bool]) -> list[str]:
    """The names that disagree with the most others; none when all agree. Of two that disagree, both."""
    agreeing = {name: sum(agree(name, other) for other in names if other != name) for name in names}
    if all(count == len(names) - 1 for count in agreeing.values()):
        return []
    most = max(agreeing.values())
    return [name for name in names if agreeing[name] < most] or names


def _nats(values: Sequence[float]) -> str:
    return f"{values[0]:.2f}" if values else "–"


def _on(exc: BackendError, url: str) -> BackendError:
    error = BackendError(f"{url}: {exc}", transient=exc.transient, retry_after=exc.retry_after, status=exc.status)
    error.endpoint = url
    return error
