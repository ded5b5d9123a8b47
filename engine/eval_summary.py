"""The eval's summary table as a fold over its output records: one row per strategy, updated record by record.

The latest record per (problem, strategy, sample) wins, as a rerun may redo a search. Running sums make each
record O(strategies) to fold, so the live table stays cheap however long the eval; per search only what pairing
needs is kept (correct or not, and its costs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.eval_stats import mcnemar_exact_p, wilson_interval


def record_key(record: dict) -> tuple[str, str, int]:
    return str(record["id"]), str(record["strategy"]), int(record.get("sample", 0))


@dataclass(frozen=True)
class StrategySummary:
    strategy: str
    n: int
    correct: int
    no_answer: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_tokens: float
    mean_requests: float
    wall_s: float  # sum of its searches' wall times (searches overlap, so this is not the eval's wall time)
    tokens_per_correct: float | None
    diff_vs_first: float | None  # paired accuracy difference against the first strategy
    mcnemar_p: float | None

    def as_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True, slots=True)
class _Graded:
    correct: bool
    answered: bool
    tokens: int
    requests: int
    wall_s: float


@dataclass
class _Sums:
    n: int = 0
    correct: int = 0
    answered: int = 0
    tokens: int = 0
    requests: int = 0
    wall_s: float = 0.0
    paired: int = 0  # searches the first strategy also ran
    only_first: int = 0  # paired searches the first strategy got right and this one wrong
    only_this: int = 0

    def count(self, graded: _Graded, sign: int) -> None:
        self.n += sign
        self.correct += sign * graded.correct
        self.answered += sign * graded.answered
        self.tokens += sign * graded.tokens
        self.requests += sign * graded.requests
        self.wall_s += sign * graded.wall_s

    def pair(self, first: _Graded, this: _Graded, sign: int) -> None:
        self.paired += sign
        self.only_first += sign * (first.correct and not this.correct)
        self.only_this += sign * (this.correct and not first.correct)


@dataclass
class EvalTally:
    strategies: list[str]  # the first is the baseline of the paired comparison
    graded: dict[str, dict[tuple[str, int], _Graded]] = field(init=False)
    sums: dict[str, _Sums] = field(init=False)

    def __post_init__(self) -> None:
        self.graded = {spec: {} for spec in self.strategies}
        self.sums = {spec: _Sums() for spec in self.strategies}

    @property
    def searches(self) -> int:
        return sum(sums.n for sums in self.sums.values())

    def add(self, record: dict) -> None:
        pid, spec, k = record_key(record)
        if spec not in self.graded:
            return  # a strategy of another eval into the same output
        key = (pid, k)
        old = self.graded[spec].get(key)
        if old is not None:
            self._count(spec, key, old, -1)
        self.graded[spec][key] = graded = _Graded(bool(record["correct"]), record["extracted"] is not None,
                                                  record["tokens"], record["requests"], record["wall_s"])
        self._count(spec, key, graded, +1)

    def _count(self, spec: str, key: tuple[str, int], graded: _Graded, sign: int) -> None:
        self.sums[spec].count(graded, sign)
        first = self.strategies[0]
        if spec != first:
            baseline = self.graded[first].get(key)
            if baseline is not None:
                self.sums[spec].pair(baseline, graded, sign)
            return
        for other in self.strategies[1:]:
            theirs = self.graded[other].get(key)
            if theirs is not None:
                self.sums[other].pair(graded, theirs, sign)

    def rows(self) -> list[StrategySummary]:
        return [self._row(spec) for spec in self.strategies]

    def _row(self, spec: str) -> StrategySummary:
        sums = self.sums[spec]
        n = sums.n
        low, high = wilson_interval(sums.correct, n)
        paired = spec != self.strategies[0] and sums.paired > 0
        return StrategySummary(
            strategy=spec, n=n, correct=sums.correct, no_answer=n - sums.answered,
            accuracy=sums.correct / n if n else 0.0, ci_low=low, ci_high=high,
            mean_tokens=sums.tokens / n if n else 0.0, mean_requests=sums.requests / n if n else 0.0,
            wall_s=sums.wall_s, tokens_per_correct=sums.tokens / sums.correct if sums.correct else None,
            diff_vs_first=(sums.only_this - sums.only_first) / sums.paired if paired else None,
            mcnemar_p=mcnemar_exact_p(sums.only_first, sums.only_this) if paired else None,
        )


def summarize(records: Iterable[dict], strategies: list[str]) -> list[StrategySummary]:
    tally = EvalTally(strategies)
    for record in records:
        tally.add(record)
    return tally.rows()


def read_records(out: Path) -> Iterator[dict]:
    """The output's records, one at a time; damaged lines are skipped (a rerun redoes them)."""
    if not out.exists():
        return
    with out.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue
