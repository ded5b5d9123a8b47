"""What a search hands back: its answer, its final population, its rounds' timings and its statistics, and
their JSON as `beamtui run --json` prints it."""

from __future__ import annotations

from dataclasses import dataclass

from engine.scoring import Candidate, mean_logprob, target_logprob
from engine.settings import SearchSettings


@dataclass(frozen=True)
class RoundTiming:
    round: int
    block: int
    stage: str
    wall_s: float
    sum_request_s: float
    requests: int
    failed: int
    tokens: int

    def as_json(self) -> dict:
        """Seconds to the 0.1 ms, as every other time in run --json."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}

    @property
    def overlap(self) -> float:
        """Requests in flight at once on average: the sum of their latencies over the wall time. Not a speedup:
        on a compute-bound backend concurrent requests slow each other down."""
        return self.sum_request_s / self.wall_s if self.wall_s else 0.0


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
        weighted = self.settings.info.weighted
        return {
            "run_id": self.run_id,
            "strategy": self.settings.strategy,
            "spec": self.settings.spec,
            "answer_is": answer_is(self.settings),
            "settings": {"alpha": self.settings.alpha, "temperature": self.settings.sampling_temperature,
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
                "rounds": [r.as_json() for r in self.rounds],
            },
            "usage": self.usage | {"prefix_tokens_reused": self.prefix_tokens_reused},
            "logprobs": "approximate" if self.approximate else "exact",
            "stop_reason": self.stop_reason,
            "error": self.error,
        }


def answer_is(settings: SearchSettings) -> str:
    """What a search with these settings answers with, in a line."""
    return settings.info.answer_is(settings)


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
