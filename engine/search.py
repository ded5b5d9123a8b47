"""Run one search with any strategy: the entry point the CLI, the TUI, bench, eval and the tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import random
import time
import uuid
from dataclasses import dataclass

from engine.errors import ConfigError, RunFailed
from engine.events import EventSink, SearchFinished, SearchStarted, discard
from engine.live import LiveBoard, report_growth
from engine.request_layer import RequestLayer
from engine.sampler import Message, Sampler
from engine.scoring import Candidate, mean_logprob, target_logprob
from engine.settings import BackendSettings, SearchSettings
from engine.strategies.base import Outcome, RoundTiming, SearchContext, Strategy
from engine.strategies.baselines import Greedy, Sample
from engine.strategies.beam import BeamSearch
from engine.strategies.best_of_n import BestOfN
from engine.strategies.mcmc import MetropolisHastings
from engine.strategies.smc import SequentialMonteCarlo
from engine.strategies.vote import MajorityVote

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (BeamSearch, MetropolisHastings, SequentialMonteCarlo, BestOfN, MajorityVote, Greedy, Sample)
}


@dataclass(frozen=True)
class SearchResult:
    run_id: str
    settings: SearchSettings
    seed: int
    answer: Candidate | None
    candidates: list[Candidate]  # the final population, best first
    rounds: list[RoundTiming]
    wall_s: float
    usage: dict
    stats: dict  # the strategy's own: acceptance rate (mcmc), resamples and ESS (smc)
    error: str | None = None
    prefix_tokens_reused: int = 0
    stop_reason: str = "max_tokens"  # max_tokens | finished | error
    approximate: bool = False  # some log p or log q were estimated by the backend, not exact

    @property
    def sum_request_s(self) -> float:
        return sum(r.sum_request_s for r in self.rounds)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    def to_json(self) -> dict:
        alpha = self.settings.alpha
        weighted = self.settings.strategy == "smc"  # the one strategy with importance weights
        return {
            "run_id": self.run_id,
            "strategy": self.settings.strategy,
            "spec": self.settings.spec,
            "answer_is": answer_is(self.settings),
            "settings": {"alpha": self.settings.alpha, "temperature": self.settings.proposal_temperature,
                         "block_tokens": self.settings.block_tokens, "max_tokens": self.settings.max_tokens,
                         "mode": self.settings.mode},
            "seed": self.seed,
            "answer": None if self.answer is None else candidate_json(self.answer, alpha, weighted),
            "candidates": [candidate_json(c, alpha, weighted) for c in self.candidates],
            "stats": self.stats,
            "timing": {
                "wall_s": round(self.wall_s, 4),
                "sum_request_s": round(self.sum_request_s, 4),
                "requests": self.requests,
                "rounds": [vars(r) for r in self.rounds],
            },
            "usage": self.usage | {"prefix_tokens_reused": self.prefix_tokens_reused},
            "logprobs": "approximate" if self.approximate else "exact",
            "stop_reason": self.stop_reason,
            "error": self.error,
        }


def answer_is(settings: SearchSettings) -> str:
    """What a search with these settings answers with, in a line."""
    return STRATEGIES[settings.strategy].answer_is(settings)


def candidate_json(candidate: Candidate, alpha: float, weighted: bool) -> dict:
    return {
        "text": candidate.text,
        "target": round(target_logprob(candidate.logprobs, alpha), 6),
        "score": round(candidate.score, 6),
        "mean_logprob": round(mean_logprob(candidate.logprobs), 6),
        "log_weight": round(candidate.log_weight, 6) if weighted else None,
        "tokens": candidate.length,
        "finished": candidate.finished,
        "finish_reason": candidate.finish_reason,
    }


def prompt_messages(settings: SearchSettings) -> tuple[Message, ...]:
    system = (Message("system", settings.system_prompt),) if settings.system_prompt else ()
    return system + (Message("user", settings.prompt),)


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
) -> SearchResult:
    """Run one search to the end and return its result. Emits events all along; a failed round ends the search
    with an error in the result, not an exception. Raises ConfigError before any request when the backend
    cannot give what the strategy needs.

    `layer` shares one request layer (one cap) between searches, as eval does. `watch_growth` streams the
    continuations of each round as they grow (CandidatesGrowing events). `answer_key` tells what an answer
    answers (eval's grader), for strategies that group answers (vote).
    """
    settings.validate()
    strategy = STRATEGIES[settings.strategy]()
    quality = sampler.logprob_quality(settings.proposal_temperature)
    if quality.logp == "unavailable":
        raise ConfigError(
            f"{sampler.name} reports only the tempered distribution's log-probabilities at temperature "
            f"{settings.proposal_temperature:g}, and no alternatives to recover log p from; use --temperature 1"
        )
    if strategy.needs_proposal_logprobs and quality.logq == "unavailable":
        raise ConfigError(
            f"{settings.strategy} needs the proposal's log-probabilities, which {sampler.name} cannot give at "
            f"temperature {settings.proposal_temperature:g}; use --temperature 1 or a strategy that only ranks"
        )
    seed = settings.seed if settings.seed is not None else random.SystemRandom().getrandbits(31)
    run_id = run_id or uuid.uuid4().hex[:8]
    if layer is None:
        layer = RequestLayer(sampler, max_concurrent=limits.max_concurrent, timeout=limits.timeout,
                             max_retries=limits.max_retries, rng=random.Random(seed))
    own_emit = layer.emit
    layer.emit = emit if own_emit is discard else own_emit
    messages = prompt_messages(settings)
    prompt_ids = tuple(sampler.render_chat(messages))
    approximate = quality.approximate if strategy.needs_proposal_logprobs else quality.logp == "estimated"
    live = LiveBoard(sampler.detokenize) if watch_growth else None
    search = SearchContext(settings, sampler, layer, emit, run_id, seed, messages, prompt_ids, live,
                           needs_proposal_logprobs=strategy.needs_proposal_logprobs, answer_key=answer_key)
    reused_before = getattr(sampler, "prefix_tokens_reused", 0)
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
        layer.emit = own_emit
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
        prefix_tokens_reused=getattr(sampler, "prefix_tokens_reused", 0) - reused_before,
        stop_reason=outcome.stop_reason,
        approximate=approximate or search.logprobs_estimated,
    )
    emit(SearchFinished(run_id, result))
    return result
