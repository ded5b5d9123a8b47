"""A sample request inside the local decoder, and the continuations it is generating."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.sampler import Continuation, SampleRequest

STOP_WINDOW = 16  # the last tokens decoded at each step to look for a stop string


@dataclass
class Job:
    request: SampleRequest
    future: concurrent.futures.Future
    streams: list[Stream] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)  # reserved at admission; seqs[0] holds the prompt
    claimed: bool = False  # has looked for a cached prefix
    prefill: list[int] = field(default_factory=list)  # prompt tokens not yet in the KV cache
    prefill_pos: int = 0  # position of prefill[0]


@dataclass
class Stream:
    """One continuation being generated in its own llama.cpp sequence."""

    job: Job
    seq: int
    rng: np.random.Generator
    pos: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    proposal_logprobs: list[float] = field(default_factory=list)
    alternatives: list[tuple[tuple[int, float], ...]] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    finish: str | None = None

    def hits_stop(self, decode: Callable[[Sequence[int]], str]) -> bool:
        tail = decode(self.tokens[-STOP_WINDOW:])
        return any(stop in tail for stop in self.job.request.stop)

    def continuation(self, decode: Callable[[Sequence[int]], str]) -> Continuation:
        """What the caller gets: the text cut before the first stop string it ended on."""
        text = decode(self.tokens)
        stops = self.job.request.stop
        if stops and self.finish == "stop":
            cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return Continuation(tuple(self.tokens), text, tuple(self.logprobs), self.finish or "length",
                            tuple(self.proposal_logprobs), tuple(self.alternatives) or None,
                            entropies=tuple(self.entropies) if self.job.request.entropies else None)
