"""Run one search with any strategy: the entry point the CLI, the TUI, bench, eval and the tests share."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

from engine.errors import ConfigError, RunFailed, TooLong
from engine.events import EventSink, SearchFinished, SearchStarted, discard
from engine.live import LiveBoard, report_growth
from engine.request_layer import RequestLayer
from engine.results import SearchResult
from engine.sampler import Message, Sampler
from engine.settings import BackendSettings, SearchSettings
from engine.strategies.base import Outcome, SearchContext


def prompt_messages(settings: SearchSettings) -> tuple[Message, ...]:
    system = (Message("system", settings.system_prompt),) if settings.system_prompt else ()
    return system + (Message("user", settings.prompt),)


def check_fits(prompt_tokens: int, max_tokens: int, sampler: Sampler) -> None:
    """Refuse, before any request, a search whose answer could outgrow what the backend holds per sequence."""
    limit = sampler.max_sequence_tokens
    if limit is None or prompt_tokens + max_tokens <= limit:
        return
    where = f"the {sampler.name} model's {limit:,} tokens per sequence"
    if prompt_tokens >= limit:
        raise TooLong(f"the prompt alone is {prompt_tokens:,} tokens, more than {where}: shorten it")
    raise TooLong(f"the prompt ({prompt_tokens:,} tokens) and --max-tokens {max_tokens:,} exceed {where}; use "
                  f"--max-tokens {limit - prompt_tokens:,} or less")


async def run_search(
    settings: SearchSettings,
    sampler: Sampler,
    limits: BackendSettings,
    emit: EventSink = discard,
    *,
    run_id: str | None = None,
    layer: RequestLayer | None = None,
    watch_growth: bool = False,
    answer_key: Callable[[str], str | None] | None = None,
    prompt: tuple[Message, ...] | str | None = None,
    board: LiveBoard | None = None,
) -> SearchResult:
    """Run one search to the end and return its result. Emits events all along; a failed round ends the search
    with an error in the result, not an exception. Raises ConfigError before any request when the backend
    cannot give what the strategy needs.

    `layer` shares one request layer (one cap) between searches, as eval does. `watch_growth` streams the
    continuations of each round as they grow (CandidatesGrowing events), on `board` when one is given (the
    proxy reads a growing answer's tokens from it). `answer_key` tells what an answer answers (eval's grader),
    for strategies that group answers (vote). `prompt` replaces the settings' prompt: a conversation in the chat
    template, or a raw completion prompt.
    """
    settings.validate()
    info = settings.info
    strategy = info.create()
    quality = sampler.logprob_quality(settings.sampling_temperature)
    if quality.logp == "unavailable":
        raise ConfigError(
            f"{sampler.name} reports only the tempered distribution's log-probabilities at temperature "
            f"{settings.proposal_temperature:g}, and no alternatives to recover log p from; use --temperature 1"
        )
    if info.needs_proposal_logprobs and quality.logq == "unavailable":
        raise ConfigError(
            f"{settings.strategy} needs the proposal's log-probabilities, which {sampler.name} cannot give at "
            f"temperature {settings.proposal_temperature:g}; use --temperature 1 or a strategy that only ranks"
        )
    seed = settings.seed if settings.seed is not None else random.SystemRandom().getrandbits(31)
    run_id = run_id or uuid.uuid4().hex[:8]
    if layer is None:
        layer = RequestLayer.for_backend(sampler, limits, seed=seed)
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = ()
        prompt_ids = tuple(sampler.render_prompt(prompt))
    else:
        messages = prompt or prompt_messages(settings)
        prompt_ids = tuple(sampler.render_chat(messages))
    check_fits(len(prompt_ids), settings.max_tokens, sampler)
    approximate = quality.approximate if info.needs_proposal_logprobs else quality.logp == "estimated"
    live = board or (LiveBoard(sampler.detokenize) if watch_growth else None)
    search = SearchContext(settings, sampler, layer, emit, run_id, seed, messages, prompt_ids, live,
                           needs_proposal_logprobs=info.needs_proposal_logprobs, answer_key=answer_key)
    reused_before = sampler.prefix_tokens_reused
    emit(SearchStarted(run_id, settings, sampler.name, seed, len(prompt_ids), layer.max_concurrent, approximate))
    started = time.perf_counter()
    reporter = asyncio.create_task(report_growth(live, emit, run_id)) if live else None
    try:
        outcome = await strategy.run(search)
    except RunFailed as exc:  # the backend cannot give what the strategy needs: this search ends here
        outcome = Outcome(None, [], "error", str(exc))
    finally:
        if reporter is not None:
            reporter.cancel()
    usage = search.usage.totals() | {"sum_latency_s": round(search.usage.sum_latency_s, 4),
                                     "peak_in_flight": layer.stats.peak_in_flight}  # the layer's, shared or not
    result = SearchResult(
        run_id=run_id,
        settings=settings,
        seed=seed,
        answer=outcome.answer,
        candidates=outcome.candidates,
        rounds=search.rounds,
        wall_s=time.perf_counter() - started,
        usage=usage,
        stats=outcome.stats,
        error=outcome.error,
        prefix_tokens_reused=sampler.prefix_tokens_reused - reused_before,
        stop_reason=outcome.stop_reason,
        approximate=approximate or search.logprobs_estimated,
    )
    emit(SearchFinished(run_id, result))
    return result
