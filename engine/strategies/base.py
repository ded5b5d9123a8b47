"""What every strategy shares: one interface, and a context that sends rounds, builds candidates and reports.

A strategy decides which continuations to ask for and what to keep; the context does everything else the same
way for all of them: requests through the shared request layer (parallel, or one at a time in sequential
mode), per-round timings, node ids for the search tree, seeds that depend only on where a request sits in the
search (so sequential and parallel runs agree), candidate text decoded from the whole token sequence, events.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engine.errors import BackendError, RunFailed
from engine.events import EventSink, Member, PopulationUpdated, RoundFinished, RoundStarted, Status
from engine.live import TEXT_TAIL_CHARS, LiveBoard
from engine.request_layer import RequestLayer, RequestStats, RequestTag, settle
from engine.results import RoundTiming
from engine.sampler import Continuation, Message, Sampler, SampleRequest
from engine.scoring import Candidate, mean_logprob, target_logprob, weighted_choice
from engine.settings import SearchSettings


@dataclass
class Outcome:
    """What a strategy hands back: its answer, the final population (best first), and its own statistics."""

    answer: Candidate | None
    candidates: list[Candidate]
    stop_reason: str = "max_tokens"  # max_tokens | finished | error
    error: str | None = None
    stats: dict = field(default_factory=dict)


class Strategy(Protocol):
    """What `StrategyInfo.create` builds: one search's decisions, the context doing the rest."""

    async def run(self, search: SearchContext) -> Outcome: ...


Outcomes = list[list[Continuation] | BackendError]


class SearchContext:
    def __init__(self, settings: SearchSettings, sampler: Sampler, layer: RequestLayer, emit: EventSink,
                 run_id: str, seed: int, messages: tuple[Message, ...], prompt_ids: tuple[int, ...],
                 live: LiveBoard | None = None, *, needs_proposal_logprobs: bool = False,
                 answer_key: Callable[[str], str | None] | None = None):
        self.settings = settings
        self.answer_key = answer_key  # what an answer answers, for grouping (eval's grader); None: not known
        self.needs_proposal_logprobs = needs_proposal_logprobs
        self.needs_entropies = settings.cut == "entropy" and "cut" in settings.info.settings_read
        self.logprobs_estimated = False  # some continuation's per-token logprobs were not all the server's own
        self.entropies_estimated = False  # some continuation's entropies came from its top alternatives only
        self.sampler = sampler
        self.layer = layer
        self.emit = emit
        self.run_id = run_id
        self.seed = seed
        self.messages = messages
        self.prompt_ids = prompt_ids
        self.live = live
        self.rounds: list[RoundTiming] = []
        self.round_number = 0
        self._block = 0
        self._nodes = itertools.count(1)
        self.usage = RequestStats()  # this search's own requests, even on a layer shared with others
        self._usage_before = (0, 0, 0.0, 0)

    @property
    def alpha(self) -> float:
        return self.settings.alpha

    def rng(self, *key: object) -> random.Random:
        """Randomness for one decision of the search, fixed by the seed and where the decision sits."""
        return random.Random(derive_seed(self.seed, *key))

    def request(self, parent: Candidate, *, n: int, max_tokens: int, key: Sequence[object],
                temperature: float | None = None) -> SampleRequest:
        """Ask for `n` continuations of `parent`'s exact token prefix."""
        return SampleRequest(
            prompt_ids=self.prompt_ids + parent.token_ids,
            n=n,
            max_tokens=max_tokens,
            temperature=self.settings.proposal_temperature if temperature is None else temperature,
            seed=derive_seed(self.seed, "request", *key) >> 33,
            stop=self.settings.stop,
            messages=self.messages,
            prompt_len=len(self.prompt_ids),
            proposal_logprobs=self.needs_proposal_logprobs,
            entropies=self.needs_entropies,
        )

    def block_budget(self, used: int, block: int) -> int:
        """Tokens a continuation of `used` tokens may add in `block`: up to the block's end, within max_tokens."""
        end = min(block * self.settings.block_tokens, self.settings.max_tokens)
        return max(0, end - used)

    async def round(self, block: int, stage: str, requests: list[tuple[SampleRequest, Candidate]]) -> Outcomes:
        """Send one round: the requests that could run together, each continuing the candidate paired with it.

        Returns, per request, its continuations or the BackendError it failed with after retries.
        """
        settings = self.settings
        self.round_number += 1
        self._block = block
        self.emit(RoundStarted(self.run_id, self.round_number, block, settings.max_blocks, stage, len(requests)))
        stats = self.usage
        self._usage_before = (stats.requests, stats.failures, stats.sum_latency_s, stats.completion_tokens)
        tag = RequestTag(self.run_id, self.round_number, stats, self.emit)
        if self.live is not None:
            requests = [(self.live.watched(request, self.round_number, index, parent), parent)
                        for index, (request, parent) in enumerate(requests)]
        started = time.perf_counter()
        if settings.mode == "sequential":
            outcomes = [await settle(self.layer.sample(r, tag, sequential=True)) for r, _ in requests]
        else:
            outcomes = await asyncio.gather(*(self.layer.sample(r, tag) for r, _ in requests),
                                            return_exceptions=True)
        wall = time.perf_counter() - started
        if self.live is not None:
            self.live.clear()
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, BackendError):
                raise outcome
            if not isinstance(outcome, BackendError):
                self._check(outcome)
        before = self._usage_before
        self.rounds.append(RoundTiming(
            self.round_number, block, stage, wall, stats.sum_latency_s - before[2], stats.requests - before[0],
            stats.failures - before[1], stats.completion_tokens - before[3],
        ))
        return outcomes

    def _check(self, continuations: list[Continuation]) -> None:
        """A strategy that corrects for the proposal cannot go on without log q of every token: an empty or
        misaligned q would silently change what it samples from."""
        for continuation in continuations:
            self.logprobs_estimated |= continuation.logprobs_estimated
            logq = continuation.proposal_logprobs
            if self.needs_proposal_logprobs and (logq is None or len(logq) != len(continuation.token_ids)):
                count = len(continuation.token_ids)
                lacked = "no log q" if logq is None else f"log q for {len(logq)} of {count} tokens"
                raise RunFailed(
                    f"{self.settings.strategy} needs log q of every proposed token, and the {self.sampler.name} "
                    f"backend ({self.sampler.model_name}) returned {lacked} at temperature "
                    f"{self.settings.proposal_temperature:g}"
                )
            entropies = continuation.entropies
            if self.needs_entropies and (entropies is None or len(entropies) != len(continuation.token_ids)):
                raise RunFailed(
                    f"entropy cuts need the next-token entropy at every position, and the {self.sampler.name} "
                    f"backend ({self.sampler.model_name}) returned "
                    f"{'none' if entropies is None else f'{len(entropies)} for {len(continuation.token_ids)} tokens'}"
                    " (a server that returns no top alternatives, or whose tokens are re-tokenised text, gives none)"
                )
            self.entropies_estimated |= self.needs_entropies and continuation.entropies_estimated

    def extend(self, parent: Candidate, continuation: Continuation, score: float | None = None,
               log_weight: float | None = None) -> Candidate:
        """`parent` continued by `continuation`: a new node whose text is decoded from all of its tokens, so a
        character split across blocks is never garbled. `score` defaults to the target log-density."""
        token_ids = parent.token_ids + continuation.token_ids
        logprobs = parent.logprobs + continuation.logprobs
        return Candidate(
            token_ids=token_ids,
            logprobs=logprobs,
            proposal_logprobs=parent.proposal_logprobs + (continuation.proposal_logprobs or ()),
            text=self.sampler.detokenize(token_ids),
            finished=continuation.finish_reason == "stop",
            finish_reason=continuation.finish_reason,
            score=target_logprob(logprobs, self.alpha) if score is None else score,
            node=next(self._nodes),
            parent=parent.node,
            log_weight=parent.log_weight if log_weight is None else log_weight,
            entropies=parent.entropies + (continuation.entropies or ()) if self.needs_entropies else (),
        )

    @staticmethod
    def prefix(state: Candidate, position: int) -> Candidate:
        """The first `position` tokens of `state`; what continues it becomes a child of `state`'s node."""
        return Candidate(state.token_ids[:position], state.logprobs[:position], state.proposal_logprobs[:position],
                         node=state.node, entropies=state.entropies[:position])

    def member(self, candidate: Candidate, slot: int, status: Status, **extra) -> Member:
        return Member(
            node=candidate.node, parent=candidate.parent, slot=slot, status=status, score=candidate.score,
            target=target_logprob(candidate.logprobs, self.alpha), mean_logprob=mean_logprob(candidate.logprobs),
            tokens=candidate.length, finished=candidate.finished, text_tail=candidate.text[-TEXT_TAIL_CHARS:],
            **extra,
        )

    def report(self, members: Sequence[Member], best: Candidate | None, **population) -> None:
        """Close the round: the population it left, and its timing with the best answer so far."""
        timing = self.rounds[-1]
        self.emit(PopulationUpdated(self.run_id, self.round_number, self._block, tuple(members), **population))
        self.emit(RoundFinished(
            self.run_id, self.round_number, self._block, timing.wall_s, timing.sum_request_s, timing.requests,
            timing.failed, timing.tokens, best.text if best else "", best.score if best else 0.0,
        ))


def stop_reason_of(population: Sequence[Candidate]) -> str:
    """Why a search that used its blocks stopped: "finished" when every answer it ends with has ended (even in
    its last block), else "max_tokens"."""
    return "finished" if population and all(c.finished for c in population) else "max_tokens"


def failure(outcomes: Outcomes) -> str:
    """The reason a round produced nothing, from its last error."""
    errors = [str(o) for o in outcomes if isinstance(o, BackendError)]
    return errors[-1] if errors else "no continuations"


def choose_output(search: SearchContext, population: Sequence[Candidate], weights: Sequence[float]) -> Candidate | None:
    """The answer of a sampler (mcmc, smc) from its final population: with output "sample" one member drawn in
    proportion to `weights`, a draw from the target; with "best" the highest target score, ties drawn at random
    (never settled by token ids, which would favour some answers for no reason)."""
    if not population:
        return None
    rng = search.rng("output")
    if search.settings.output == "sample":
        return population[weighted_choice(weights, rng.random())]
    top = max(c.score for c in population)
    return rng.choice([c for c in population if c.score == top])


def output_is(member: str, draw: str) -> Callable[[SearchSettings], str]:
    """What a sampler's answer is, by its `output`: `draw` (a draw from p^alpha), or its likeliest `member`."""

    def answer_is(settings: SearchSettings) -> str:
        if settings.output == "best":
            return f"the likeliest {member}: the final {member} with the highest alpha*log p, mode-seeking, not a draw"
        return f"a draw from p^alpha: {draw}"

    return answer_is


ROOT = Candidate(node=0, parent=-1)  # the prompt: every search starts here


def derive_seed(seed: int, *key: object) -> int:
    """A 64-bit seed fixed by `seed` and `key`, the same in every process (str hashes are salted per process)."""
    text = ":".join(map(str, (seed, *key))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
