"""Eval: strategies side by side on a problem file, graded, resumable, under one request layer.

Every (problem, strategy, sample) is one search. Searches run concurrently in a sliding window, problem by
problem, and all of them share one request layer, so `max_concurrent` bounds the whole eval. Each finished
search is appended and flushed at once; a rerun skips what the output holds. The summary (engine/eval/summary.py)
is a fold over the output file, so a resumed eval reports every problem, not just the ones of its last run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError, TooLong
from engine.eval.grading import Grader, prompt_for
from engine.eval.problems import Problem, ProblemSet
from engine.eval.summary import read_records, record_key, timing_record
from engine.events import EventSink, discard
from engine.jsonl import JsonlAppender, repair_and_load
from engine.request_layer import RequestLayer
from engine.sampler import Sampler
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from engine.task_window import TaskWindow

# Its phases took 9.6 minutes on 2 cores for the 200 shipped problems.
DEFAULT_STRATEGIES = "greedy,vote:4,smc:4,mcmc:1x2"


# What eval's searches use unless told: short answers, and one fixed seed so a rerun resumes the same draws.
EVAL_SEARCH_DEFAULTS = {"max_tokens": 32, "block_tokens": 16, "seed": 0}


@dataclass(frozen=True)
class EvalSettings:
    search: SearchSettings  # shared settings: alpha, temperature, block and max tokens, mode
    strategies: tuple[SearchSettings, ...]
    grader: Grader
    template: str
    out: Path
    samples: int = 1
    seed: int = 0
    problems: str = ""  # the problem file's name, to tell one eval's output from another's

    def fingerprint(self) -> dict:
        """What makes two evals' results comparable: a rerun into the same output must match it."""
        search = self.search
        return {"alpha": search.alpha, "temperature": search.proposal_temperature,
                "block_tokens": search.block_tokens, "max_tokens": search.max_tokens, "grader": self.grader.name,
                "template": self.template, "problems": self.problems}

    def check_resumable(self) -> None:
        """Refuse to resume into an output whose results were made with other settings: folded into one summary
        they would compare unlike with like. The output's first result stands for the rest."""
        first = next((r for r in read_records(self.out) if "settings" in r and "id" in r), None)
        if first is None:
            return
        ours, theirs = self.fingerprint(), first["settings"]
        differ = [f"{key} {theirs.get(key)!r} there, {value!r} now" for key, value in ours.items()
                  if theirs.get(key, value) != value]
        if differ:
            raise ConfigError(f"{self.out} holds results made with other settings ({'; '.join(differ)}); give "
                              f"another --out, or the same settings to resume it")

    def validate(self) -> EvalSettings:
        specs = [s.spec for s in self.strategies]
        if len(set(specs)) != len(specs):
            raise ConfigError(f"--strategies names a strategy twice: {','.join(specs)}")
        if self.samples < 1:
            raise ConfigError(f"samples must be an integer >= 1, got {self.samples!r}")
        return self


def parse_strategies(text: str, base: SearchSettings) -> tuple[SearchSettings, ...]:
    specs = [part for part in text.split(",") if part.strip()]
    if not specs:
        raise ConfigError("--strategies is empty")
    return tuple(base.with_spec(spec) for spec in specs)


@dataclass
class StrategyProgress:
    total: int
    done: int = 0
    correct: int = 0
    skipped: int = 0  # already in the output from earlier runs


@dataclass
class Evaluator:
    settings: EvalSettings
    backend: BackendSettings
    sampler: Sampler
    layer: RequestLayer
    on_result: Callable[[str, dict, StrategyProgress], None] = lambda spec, record, progress: None
    on_timing: Callable[[dict], None] = lambda record: None  # each timing line as it is written
    emit: EventSink = discard  # every search's events, each tagged with its own run id (the eval dashboard)
    progress: dict[str, StrategyProgress] = field(default_factory=dict)

    async def run(self, problems: ProblemSet | list[Problem]) -> float:
        """Every missing (problem, strategy, sample) search; returns the wall time of this run. Problems are
        taken one at a time as the window frees, so a problem set read from a file is never held whole.

        Strategies run one after another, each at the full concurrency, so each one's wall time is measured on
        its own (a timing line in the output after each); interleaved, a fast baseline would wait on the slow."""
        settings = self.settings
        done = repair_and_load(settings.out, record_key)
        for strategy in settings.strategies:
            self.progress[strategy.spec] = StrategyProgress(total=len(problems) * settings.samples)
        # Searches in hand at once: twice the cap, so a freed request slot finds the next search's prompt already
        # rendered (measured with greedy + best-of-n:4 at cap 64 and 0.3 s: 0.90 of ideal with one cap's worth).
        window = TaskWindow(1 if settings.search.mode == "sequential" else 2 * self.layer.max_concurrent)
        output = JsonlAppender(settings.out)
        started = time.perf_counter()
        phase: tuple[str, float, int] | None = None  # the strategy being timed: its spec, start, searches before
        try:
            for strategy in settings.strategies:
                progress = self.progress[strategy.spec]
                phase = (strategy.spec, time.perf_counter(), progress.done)
                for problem, k in ((problem, k) for problem in problems for k in range(settings.samples)):
                    if (problem.id, strategy.spec, k) in done:
                        progress.skipped += 1
                        continue
                    # A search that raised (not one whose requests failed) stops the eval here.
                    await window.start(self._one(problem, strategy, k, output))
                await window.drain()
                self._time_phase(output, *phase)
                phase = None
        finally:
            await window.close()
            if phase is not None:  # stopped mid-strategy (Ctrl+C): its finished searches are timed too
                self._time_phase(output, *phase)
            output.close()
        return time.perf_counter() - started

    def _time_phase(self, output: JsonlAppender, spec: str, started: float, done_before: int) -> None:
        """A timing line for the searches of `spec` this run finished, so that every search in the output is
        timed, whichever run it came from."""
        searches = self.progress[spec].done - done_before
        if searches:
            record = timing_record(spec, searches, time.perf_counter() - started, self.layer.max_concurrent)
            output.write(record)
            self.on_timing(record)

    async def _one(self, problem: Problem, strategy: SearchSettings, k: int, output: JsonlAppender) -> None:
        settings = self.settings
        prompt = prompt_for(settings.template, problem)
        run_id = hashlib.sha256(f"{problem.id}|{strategy.spec}|{k}".encode()).hexdigest()[:12]
        search = strategy.replace(prompt=prompt, seed=_seed(settings.seed, problem.id, k))
        try:
            result = await run_search(search, self.sampler, self.backend, self.emit, run_id=run_id,
                                      layer=self.layer, watch_growth=self.emit is not discard,
                                      answer_key=settings.grader.answer_key(problem))
        except TooLong as exc:  # this problem's prompt does not fit: it counts as unanswered, the eval goes on
            result = None
            error = str(exc)
        usage = result.usage if result else {"completion_tokens": 0, "requests": 0, "failures": 0}
        text = result.answer.text if result is not None and result.answer is not None else ""
        grade = settings.grader.grade(text, problem)
        record = {
            "id": problem.id, "strategy": strategy.spec, "sample": k, "answer": text,
            "extracted": grade.extracted, "gold": problem.answer, "correct": grade.correct,
            "tokens": usage["completion_tokens"], "requests": usage["requests"], "failures": usage["failures"],
            "wall_s": round(result.wall_s, 4) if result else 0.0, "error": result.error if result else error,
            "settings": {**settings.fingerprint(), "seed": search.seed, "mode": search.mode},
        }
        output.write(record)
        progress = self.progress[strategy.spec]
        progress.done += 1
        progress.correct += grade.correct
        self.on_result(strategy.spec, record, progress)


def _seed(seed: int, problem_id: str, sample: int) -> int:
    """One seed per (problem, sample), the same for every strategy: paired runs start alike."""
    return int(hashlib.sha256(f"{seed}:{problem_id}:{sample}".encode()).hexdigest()[:8], 16)
