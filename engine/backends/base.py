"""The one small async protocol every backend speaks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]


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


@dataclass(frozen=True)
class Continuation:
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]  # log p of each sampled token under the model (temperature 1)
    finish_reason: FinishReason


Send = Callable[[SampleRequest], Awaitable[list[Continuation]]]


@runtime_checkable
class Sampler(Protocol):
    """A backend. `honours_n` is False once it has seen the server ignore `n`."""

    name: str
    honours_n: bool

    async def start(self, send: Send) -> None:
        """Load or connect, and check the backend can do the job; raise ConfigError if it cannot.

        `send` is the request layer's retrying sender, for probe requests that must survive a flaky server.
        """

    async def sample(self, request: SampleRequest) -> list[Continuation]: ...

    def tokenize(self, text: str) -> list[int]: ...

    def detokenize(self, token_ids: Sequence[int]) -> str: ...

    def render_chat(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of `messages` in the backend's chat template, ready for the assistant's answer."""

    @property
    def chat_template(self) -> str: ...

    @property
    def model_name(self) -> str:
        """What produced the tokens: a GGUF file name or the endpoint's model name."""

    async def aclose(self) -> None: ...
