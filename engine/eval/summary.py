"""The eval's summary table as a fold over its output records: one row per strategy, updated record by record.

The latest record per (problem, strategy, sample) wins, as a rerun may redo a search. Running sums make each
record O(strategies) to fold, so the live table stays cheap however long the eval; per search only what pairing
needs is kept (correct or not, and its costs).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.eval.stats import mcnemar_exact_p, pass_at_k, pass_at_ks, wilson_interval


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
    # pass@k for k = 1, 2, 4, ... up to the samples per problem, over the problems with that many samples
    pass_at: dict[int, float] = field(default_factory=dict)
    seconds_per_search: float | None = None  # its searches timed on their own, at the eval's concurrency
    timed_searches: int = 0  # how many of its searches that time covers: fewer than n after a run killed outright
    # Cost as multiples of the first strategy's: tokens and requests per search, wall time per search alone.
    x_tokens: float | None = None
    x_requests: float | None = None
    x_time: float | None = None

    def as_dict(self) -> dict:
        data = {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}
        data["pass_at"] = {f"pass@{k}": round(v, 6) for k, v in self.pass_at.items()}
        return data


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


def timing_record(spec: str, searches: int, wall_s: float, max_concurrent: int) -> dict:
    """A line of the output that is not a result: how long `searches` searches of one strategy took on their
    own, at `max_concurrent`. The summary turns these into each strategy's time per search."""
    return {"timing": spec, "searches": searches, "wall_s": round(wall_s, 4), "max_concurrent": max_concurrent}


@dataclass
class EvalTally:
    strategies: list[str]  # the first is the baseline of the paired comparison
    samples: int = 1  # searches per problem and strategy: pass@k is reported up to it
    graded: dict[str, dict[tuple[str, int], _Graded]] = field(init=False)
    sums: dict[str, _Sums] = field(init=False)
    problems: dict[str, dict[str, list[int]]] = field(init=False)  # per strategy, per problem: [searches, right]
    timed: dict[str, list[float]] = field(init=False)  # per strategy: [searches, seconds], timed on their own

    def __post_init__(self) -> None:
        self.graded = {spec: {} for spec in self.strategies}
        self.sums = {spec: _Sums() for spec in self.strategies}
        self.problems = {spec: {} for spec in self.strategies}
        self.timed = {spec: [0, 0.0] for spec in self.strategies}

    @property
    def searches(self) -> int:
        return sum(sums.n for sums in self.sums.values())

    def add(self, record: dict) -> None:
        if "timing" in record:
            timed = self.timed.get(record["timing"])
            if timed is not None:
                timed[0] += record["searches"]
                timed[1] += record["wall_s"]
            return
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
        counts = self.problems[spec].setdefault(key[0], [0, 0])
        counts[0] += sign
        counts[1] += sign * graded.correct
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
        rows = [self._row(spec) for spec in self.strategies]
        first = rows[0]
        return [dataclasses.replace(
            row,
            x_tokens=_ratio(row.mean_tokens, first.mean_tokens) if row.n and first.n else None,
            x_requests=_ratio(row.mean_requests, first.mean_requests) if row.n and first.n else None,
            x_time=_ratio(row.seconds_per_search, first.seconds_per_search),
        ) for row in rows]

    def _pass_at(self, spec: str) -> dict[int, float]:
        result = {}
        for k in pass_at_ks(self.samples):
            values = [pass_at_k(n, c, k) for n, c in self.problems[spec].values() if n >= k]
            if values:
                result[k] = sum(values) / len(values)
        return result

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
            pass_at=self._pass_at(spec),
            seconds_per_search=self.timed[spec][1] / self.timed[spec][0] if self.timed[spec][0] else None,
            timed_searches=self.timed[spec][0],
        )


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def summarize(records: Iterable[dict], strategies: list[str], samples: int = 1) -> list[StrategySummary]:
    tally = EvalTally(strategies, samples)
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
