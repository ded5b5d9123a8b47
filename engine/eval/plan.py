"""An eval planned from settings values, every check that needs no backend done, and its run under one request
layer: what `beamtui eval`, its dashboard and a library user share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError
from engine.eval.budgets import Budgeted, Curve, curves, expand, parse_budgets
from engine.eval.evaluator import DEFAULT_STRATEGIES, EVAL_SEARCH_DEFAULTS, EvalSettings, Evaluator, parse_strategies
from engine.eval.grading import TEMPLATES, check_template, parse_grader
from engine.eval.problems import ProblemSet, read_problems
from engine.eval.summary import StrategySummary, read_records, record_key, summarize
from engine.events import EventSink, discard
from engine.jsonl import check_writable
from engine.request_layer import RequestLayer
from engine.sampler import Sampler
from engine.settings import BackendSettings, settings_from


@dataclass(frozen=True)
class EvalPlan:
    settings: EvalSettings
    backend: BackendSettings
    problem_set: ProblemSet
    budgeted: tuple[Budgeted, ...] = ()  # with --budgets: which family and budget each strategy is

    @property
    def headline(self) -> str:
        return (f"problems: {self.problem_set.describe()} · grader {self.settings.grader.name} · "
                f"{','.join(s.spec for s in self.settings.strategies)} · {self.backend.backend} · "
                f"cap {self.backend.max_concurrent}")

    def records(self) -> Iterator[dict]:
        """The output's records for this eval's problems and samples (earlier runs' too), one at a time."""
        ids, samples = self.problem_set.ids, self.settings.samples
        return (r for r in read_records(self.settings.out)
                if "timing" in r or (r.get("id") in ids and r.get("sample", 0) < samples))

    def done_counts(self) -> dict[str, int]:
        """Per strategy, the searches the output already holds for these problems: where a resumed eval starts."""
        specs = {s.spec for s in self.settings.strategies}
        done = {record_key(r) for r in self.records() if "id" in r and r.get("strategy") in specs}
        counts = dict.fromkeys(specs, 0)
        for _, spec, _ in done:
            counts[spec] += 1
        return counts

    def summary(self) -> list[StrategySummary]:
        """One row per strategy, over every result in the output for these problems."""
        return summarize(self.records(), [s.spec for s in self.settings.strategies], self.settings.samples)

    def curves(self) -> list[Curve]:
        """Accuracy against tokens, one curve per family (with --budgets), else one point per strategy."""
        return self.curves_of(self.summary())

    def curves_of(self, rows: list[StrategySummary]) -> list[Curve]:
        budgeted = self.budgeted or tuple(Budgeted(s.spec, None, s) for s in self.settings.strategies)
        return curves(rows, budgeted)

    async def run(self, sampler: Sampler, *, on_result: Callable | None = None, on_timing: Callable | None = None,
                  emit: EventSink = discard) -> float:
        """Every search the output does not hold yet, appended as it finishes; the wall time of this run."""
        layer = RequestLayer.for_backend(sampler, self.backend, seed=self.settings.seed, emit=emit)
        evaluator = Evaluator(self.settings, self.backend, sampler, layer, emit=emit)
        if on_result is not None:
            evaluator.on_result = on_result
        if on_timing is not None:
            evaluator.on_timing = on_timing
        return await evaluator.run(self.problem_set)


def plan_eval(values: dict, *, problems: str | Path, out: str | Path, strategies: str = DEFAULT_STRATEGIES,
              grader: str = "auto", template: str | None = None, limit: int | None = None,
              samples: int = 1, budgets: str | None = None) -> EvalPlan:
    """An eval from settings values (flags or a config file, by setting name) at eval's defaults; every check
    that needs no backend, so bad input fails before a model loads or a screen opens."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    merged = EVAL_SEARCH_DEFAULTS | values
    if "block_tokens" not in values:
        merged["block_tokens"] = min(merged["block_tokens"], merged["max_tokens"])
    base, backend = settings_from(merged | {"prompt": "(each problem's)"})
    specs = parse_strategies(strategies, base)
    budgeted = expand(specs, parse_budgets(budgets)) if budgets is not None else ()
    if budgeted:
        specs = tuple(item.settings for item in budgeted)
    problem_set = read_problems(Path(problems), limit)
    chosen = parse_grader(grader, problem_set.shape, problem_set.first_answer)
    settings = EvalSettings(base, specs, chosen,
                            check_template(template or TEMPLATES[chosen.kind]), Path(out), samples, base.seed,
                            Path(problems).name).validate()
    check_writable(settings.out)
    settings.check_resumable()
    return EvalPlan(settings, backend, problem_set, budgeted)
