"""Continuations as they grow: backends hand over the lists they append tokens to, and a snapshot of them is
taken about ten times a second, so watching costs nothing per token and a slow reader never slows decoding."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.events import CandidatesGrowing, EventSink, LiveCandidate
from engine.sampler import SampleRequest, live_text
from engine.scoring import Candidate, mean_logprob

SNAPSHOT_INTERVAL_S = 0.1
TAIL_CONTEXT_TOKENS = 24  # decoded for a tail: enough for 80 characters, cheap at 100 candidates x 10 Hz
TEXT_TAIL_CHARS = 80


@dataclass
class _Growing:
    parent: Candidate
    tokens: list[int]
    logprobs: list[float]


class LiveBoard:
    """The in-flight continuations of the current round."""

    def __init__(self, detokenize: Callable[[Sequence[int]], str]):
        self.detokenize = detokenize
        self.round = 0
        self._growing: dict[str, _Growing] = {}
        self._shown: dict[str, int] = {}

    def watched(self, request: SampleRequest, round_number: int, request_index: int,
                parent: Candidate) -> SampleRequest:
        """`request`, with a watch that registers each of its continuations here as it starts."""
        self.round = round_number

        def watch(index: int, tokens: list[int], logprobs: list[float]) -> None:
            self._growing[f"{round_number}:{request_index}:{index}"] = _Growing(parent, tokens, logprobs)

        return dataclasses.replace(request, watch=watch)

    def growing_tokens(self) -> list[list[int]]:
        """The token lists of the continuations growing now, as their backends append to them."""
        return [entry.tokens for entry in list(self._growing.values())]

    def clear(self) -> None:
        self._growing = {}
        self._shown = {}

    def snapshot(self) -> tuple[LiveCandidate, ...] | None:
        """What grew since the last snapshot, or None when nothing did."""
        growing = list(self._growing.items())  # one atomic copy; backends may add entries from their threads
        counts = {key: len(entry.tokens) for key, entry in growing if entry.tokens}
        if counts == self._shown:
            return None
        self._shown = counts
        live = []
        for key, entry in growing:
            count = counts.get(key, 0)
            if not count:
                continue
            tokens = entry.tokens[:count]
            logprobs = entry.logprobs[:count]  # appended before each token, so never shorter
            parent = entry.parent
            tail = self.detokenize(parent.token_ids[-TAIL_CONTEXT_TOKENS:] + tuple(tokens))
            live.append(LiveCandidate(key, parent.node, count, parent.length + count, mean_logprob(logprobs),
                                      live_text(tail)[-TEXT_TAIL_CHARS:]))
        return tuple(live)


async def report_growth(board: LiveBoard, emit: EventSink, run_id: str) -> None:
    """Emit a CandidatesGrowing snapshot about ten times a second, for as long as the search runs."""
    while True:
        await asyncio.sleep(SNAPSHOT_INTERVAL_S)
        live = board.snapshot()
        if live is not None:
            emit(CandidatesGrowing(run_id, board.round, live))
