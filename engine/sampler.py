"""The one small async protocol every backend speaks, and the types that cross it.

This module sits at the bottom of the engine: it imports nothing else from `engine`, so any module may import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

# "stop": the model ended the answer (end-of-sequence or a stop string); "length": the token budget ran out. A
# server may give others ("content_filter", "abort"): they are kept as they are and never count as an end.
FinishReason = str
Quality = Literal["exact", "estimated", "unavailable"]

# Live progress of one continuation: (index among the request's n, the token ids so far, their log p so far).
# The backend calls it once, when the continuation starts, with lists it then appends to as tokens arrive;
# a reader takes a snapshot by slicing them, so no copy is made per token.
Watch = Callable[[int, list[int], list[float]], None]


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class SampleRequest:
    """Sample `n` continuations of at most `max_tokens` tokens after `prompt_ids`.

    `messages` and `prompt_len` describe where `prompt_ids` came from: the rendered chat prompt is
    `prompt_ids[:prompt_len]` and the rest is a partial answer. Only chat-only endpoints need them.
    """

    prompt_ids: tuple[int, ...]
    n: int
    max_tokens: int
    temperature: float
    seed: int | None = None
    stop: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    prompt_len: int = 0
    proposal_logprobs: bool = False  # the caller needs log q: remote backends then ask for what estimates it
    top_logprobs: int = 0  # return this many top alternatives (raw log p) at each position
    entropies: bool = False  # return the model's next-token entropy at each position (entropy-cut MH)
    watch: Watch | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Continuation:
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]  # log p of each sampled token under the model at temperature 1
    finish_reason: FinishReason
    # log q of each token under the distribution it was drawn from (the proposal); None where unknown.
    proposal_logprobs: tuple[float, ...] | None = None
    # With SampleRequest.top_logprobs: the best alternatives at each position, as (token id, log p).
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] | None = None
    endpoint: str | None = None  # which endpoint answered, when requests are spread over several
    # The per-token logprobs are not all the server's own: text re-tokenised on our side got an even share of the
    # total, or an end-of-sequence token the server did not score is missing from them.
    logprobs_estimated: bool = False
    # With SampleRequest.entropies: the entropy of the model's next-token distribution (temperature 1) at each
    # position, before its token was drawn; estimated from the top alternatives when the backend has no full row.
    entropies: tuple[float, ...] | None = None
    entropies_estimated: bool = False


@dataclass(frozen=True)
class LogprobQuality:
    """How a backend knows log p and log q at one sampling temperature."""

    logp: Quality
    logq: Quality

    @property
    def approximate(self) -> bool:
        return "estimated" in (self.logp, self.logq)


EXACT = LogprobQuality("exact", "exact")

Send = Callable[[SampleRequest], Awaitable[list[Continuation]]]


@runtime_checkable
class Sampler(Protocol):
    """A backend, and every capability the engine reads of it. `honours_n` is False once it has seen the server
    ignore `n`; `max_n` caps `n` per request (None: no cap); larger requests are split by the request layer."""

    name: str
    honours_n: bool
    max_n: int | None
    retries_inside: bool  # its own retry loop is in charge: the request layer does not retry on top
    times_itself: bool  # it bounds its own stalls: the request layer sets no per-attempt timeout
    prefix_tokens_reused: int  # prompt tokens served from its cache so far
    latency: float  # simulated network delay added to each request (the local backend; settings refuse it elsewhere)
    max_sequence_tokens: int | None  # prompt and answer together at most, per sequence; None: the server did not say

    def describe(self) -> list[dict] | None:
        """Per endpoint, what it supports and how it fares; None for a backend of one endpoint."""

    async def start(self, send: Send) -> None:
        """Load or connect, and check the backend can do the job; raise ConfigError if it cannot.

        `send` is the request layer's retrying sender, for probe requests that must survive a flaky server.
        """

    async def sample(self, request: SampleRequest) -> list[Continuation]: ...

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        """What the continuations of a request at `temperature` that asks for log q carry: exact, estimated,
        or none."""

    def tokenize(self, text: str) -> list[int]: ...

    def is_end(self, token_id: int) -> bool:
        """Whether the token ends an answer (end of sequence); False for every token when the backend cannot say."""

    def detokenize(self, token_ids: Sequence[int]) -> str: ...

    def render_chat(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of `messages` in the backend's chat template, ready for the assistant's answer."""

    def render_prompt(self, prompt: str) -> list[int]:
        """Token ids of a raw completion prompt, its special-token markup read as the model's own."""

    @property
    def chat_template(self) -> str: ...

    @property
    def model_name(self) -> str:
        """What produced the tokens: a GGUF file name or the endpoint's model name."""

    async def aclose(self) -> None: ...


class SamplerDefaults:
    """The capabilities most backends share, for a backend to inherit and override."""

    honours_n = True
    max_n: int | None = None
    retries_inside = False
    times_itself = False
    prefix_tokens_reused = 0
    latency = 0.0
    max_sequence_tokens: int | None = None

    def describe(self) -> list[dict] | None:
        return None

    def is_end(self, token_id: int) -> bool:
        return False


def live_text(text: str) -> str:
    """A live tail may end inside a multi-byte character, which decodes as U+FFFD; hold it back."""
    return text.rstrip("\ufffd")
