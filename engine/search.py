"""Block-wise power beam search.

Every block, each active beam asks for `n_per_beam` continuations of `block_tokens` tokens. The candidates are
scored from their log-probabilities, and the best `beam_width` survive. Beams hold token ids: a continuation is
always requested from the exact token prefix, never from re-tokenised text.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

from engine.backends.base import Continuation, Message, Sampler, SampleRequest
from engine.errors import BackendError
from engine.events import (
    BlockFinished,
    BlockStarted,
    CandidatesScored,
    EventSink,
    ScoredCandidate,
    SearchFinished,
    SearchStarted,
    discard,
)
from engine.request_layer import RequestLayer, RequestTag, settle
from engine.scoring import Beam, beam_score, rank, select
from engine.settings import BackendSettings, SearchSettings

TEXT_TAIL_CHARS = 80


@dataclass(frozen=True)
class BlockTiming:
    block: int
    wall_s: float
    sum_request_s: float
    requests: int
    failed: int


@dataclass(frozen=True)
class SearchResult:
    run_id: str
    settings: SearchSettings
    seed: int
    beams: list[Beam]  # best first
    blocks: list[BlockTiming]
    wall_s: float
    usage: dict
    error: str | None = None
    prefix_tokens_reused: int = 0
    stop_reason: str = "max_tokens"  # max_tokens | finished | error

    @property
    def best(self) -> Beam | None:
        return self.beams[0] if self.beams else None

    @property
    def sum_request_s(self) -> float:
        return sum(block.sum_request_s for block in self.blocks)

    @property
    def requests(self) -> int:
        return sum(block.requests for block in self.blocks)

    def to_json(self) -> dict:
        best = self.best
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "best": None if best is None else _beam_json(best),
            "beams": [_beam_json(beam) for beam in self.beams],
            "timing": {
                "wall_s": round(self.wall_s, 4),
                "sum_request_s": round(self.sum_request_s, 4),
                "requests": self.requests,
                "blocks": [vars(block) for block in self.blocks],
            },
            "usage": self.usage | {"prefix_tokens_reused": self.prefix_tokens_reused},
            "stop_reason": self.stop_reason,
            "error": self.error,
        }


def _beam_json(beam: Beam) -> dict:
    return {
        "text": beam.text,
        "score": round(beam.score, 6),
        "mean_logprob": round(beam.mean_logprob, 6),
        "tokens": beam.length,
        "finished": beam.finished,
    }


def block_seed(seed: int, block: int, beam: int) -> int:
    """A request seed that depends only on where the request sits in the search, not on timing."""
    return random.Random(f"{seed}:{block}:{beam}").getrandbits(31)


def prompt_messages(settings: SearchSettings) -> tuple[Message, ...]:
    system = (Message("system", settings.system_prompt),) if settings.system_prompt else ()
    return system + (Message("user", settings.prompt),)


@dataclass
class _Run:
    settings: SearchSettings
    layer: RequestLayer
    emit: EventSink
    run_id: str
    seed: int
    messages: tuple[Message, ...]
    prompt_ids: tuple[int, ...]
    finished: list[Beam] = field(default_factory=list)
    active: list[Beam] = field(default_factory=list)
    blocks: list[BlockTiming] = field(default_factory=list)


async def run_search(
    settings: SearchSettings,
    sampler: Sampler,
    limits: BackendSettings,
    emit: EventSink = discard,
    *,
    run_id: str | None = None,
) -> SearchResult:
    """Run one search to the end and return its result. Emits events all along; never raises for a failed block."""
    settings.validate()
    seed = settings.seed if settings.seed is not None else random.SystemRandom().getrandbits(31)
    layer = RequestLayer(
        sampler,
        max_concurrent=limits.max_concurrent,
        timeout=limits.timeout,
        max_retries=limits.max_retries,
        emit=emit,
        rng=random.Random(seed),
    )
    messages = prompt_messages(settings)
    prompt_ids = tuple(sampler.render_chat(messages))
    run = _Run(settings, layer, emit, run_id or uuid.uuid4().hex[:8], seed, messages, prompt_ids)
    run.active = [Beam()] * settings.beam_width
    reused_before = getattr(sampler, "prefix_tokens_reused", 0)
    emit(SearchStarted(run.run_id, settings, sampler.name, seed, len(prompt_ids), limits.max_concurrent))
    started = time.perf_counter()
    error = None
    stop_reason = "max_tokens"
    for block in range(1, settings.max_blocks + 1):
        if run.active[0].length >= settings.max_tokens:
            break  # re-tokenised text (text-mode servers) can reach the budget before the last block
        error = await _run_block(run, block)
        if error is not None:
            stop_reason = "error"
            break
        if not run.active or len(run.finished) >= settings.beam_width:
            stop_reason = "finished"
            break
    beams = rank(run.finished + run.active)[: settings.beam_width]
    stats = layer.stats
    result = SearchResult(
        run_id=run.run_id,
        settings=settings,
        seed=seed,
        beams=beams if any(beam.length for beam in beams) else [],
        blocks=run.blocks,
        wall_s=time.perf_counter() - started,
        usage=stats.as_dict(),
        error=error,
        prefix_tokens_reused=getattr(sampler, "prefix_tokens_reused", 0) - reused_before,
        stop_reason=stop_reason,
    )
    emit(SearchFinished(run.run_id, result))
    return result


async def _run_block(run: _Run, block: int) -> str | None:
    """Extend every active beam by one block. Returns an error message when the whole block failed."""
    settings = run.settings
    used = run.active[0].length
    block_len = min(settings.block_tokens, settings.max_tokens - used)
    requests = [
        SampleRequest(
            prompt_ids=run.prompt_ids + beam.token_ids,
            n=settings.n_per_beam,
            max_tokens=block_len,
            temperature=settings.proposal_temperature,
            seed=block_seed(run.seed, block, index),
            messages=run.messages,
            prompt_len=len(run.prompt_ids),
        )
        for index, beam in enumerate(run.active)
    ]
    run.emit(BlockStarted(run.run_id, block, settings.max_blocks, len(run.active), len(requests)))
    stats = run.layer.stats
    before = (stats.requests, stats.failures, stats.sum_latency_s, stats.completion_tokens)
    tag = RequestTag(run.run_id, block)
    started = time.perf_counter()
    sequential = settings.mode == "sequential"
    if sequential:
        outcomes = [await settle(run.layer.sample(r, tag, sequential=True)) for r in requests]
    else:
        outcomes = await asyncio.gather(*(run.layer.sample(r, tag) for r in requests), return_exceptions=True)
    wall = time.perf_counter() - started
    timing = BlockTiming(
        block,
        wall,
        stats.sum_latency_s - before[2],
        stats.requests - before[0],
        stats.failures - before[1],
    )
    run.blocks.append(timing)
    candidates: list[Beam] = []
    errors: list[str] = []
    for parent_index, (parent, outcome) in enumerate(zip(run.active, outcomes, strict=True)):
        if isinstance(outcome, BackendError):
            errors.append(str(outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            candidates.extend(_extend(parent, parent_index, c, settings) for c in outcome)
    if not candidates:
        return f"block {block} failed: every request failed ({errors[-1] if errors else 'no continuations'})"
    selection = select(candidates, settings.beam_width)
    kept = {id(beam) for beam in selection.survivors + selection.finished}
    run.finished.extend(selection.finished)
    run.active = selection.survivors
    ranked = rank(selection.survivors + selection.finished + selection.pruned)
    run.emit(
        CandidatesScored(
            run.run_id,
            block,
            tuple(
                ScoredCandidate(
                    beam.parent, beam.score, beam.mean_logprob, beam.length, beam.finished, id(beam) in kept,
                    beam.text[-TEXT_TAIL_CHARS:],
                )
                for beam in ranked
            ),
            selection.duplicates,
        )
    )
    best = rank(run.finished + run.active)[0]
    run.emit(
        BlockFinished(
            run.run_id, block, wall, timing.sum_request_s, timing.requests, timing.failed,
            stats.completion_tokens - before[3], best.text, best.score,
        )
    )
    return None


def _extend(parent: Beam, parent_index: int, continuation: Continuation, settings: SearchSettings) -> Beam:
    logprobs = parent.logprobs + continuation.logprobs
    return Beam(
        token_ids=parent.token_ids + continuation.token_ids,
        logprobs=logprobs,
        text=parent.text + continuation.text,
        finished=continuation.finish_reason == "stop",
        score=beam_score(logprobs, settings.alpha, settings.length_penalty),
        parent=parent_index,
    )
