"""Budget curves: each strategy family run at budgets 1, 2, 4, ... (eval --budgets), its sizes grown as its
registry entry says (`StrategyInfo.grows`: particles, MH steps, N, rollouts), and the curves read back from the
summary, accuracy against tokens spent, a point per budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.eval.summary import StrategySummary
from engine.settings import SearchSettings

MOST_BUDGET = 64
MOST_BUDGETS = 8


@dataclass(frozen=True)
class Budgeted:
    """One search of a family at one budget."""

    family: str  # the spec as given: its budget-1 form
    budget: int | None  # None: a strategy whose cost no budget changes (greedy, sample), run once
    settings: SearchSettings


@dataclass(frozen=True)
class CurvePoint:
    budget: int | None
    tokens: float  # mean tokens per search
    accuracy: float
    ci_low: float
    ci_high: float
    requests: float
    seconds: float | None  # per search, timed on its own; None when not timed
    pass_at: dict


@dataclass(frozen=True)
class Curve:
    family: str
    points: tuple[CurvePoint, ...]


def parse_budgets(text: str) -> tuple[int, ...]:
    """--budgets 1,2,4,8: distinct whole multiples, 1 to MOST_BUDGET, in ascending order."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ConfigError(f"--budgets must be comma-separated whole numbers like 1,2,4,8, got {text!r}")
    budgets = sorted({int(part) for part in parts})
    if budgets[0] < 1 or budgets[-1] > MOST_BUDGET or len(budgets) > MOST_BUDGETS:
        raise ConfigError(f"--budgets must be at most {MOST_BUDGETS} numbers from 1 to {MOST_BUDGET}, got {text!r}")
    return tuple(budgets)


def at_budget(settings: SearchSettings, budget: int) -> SearchSettings:
    """The family `settings` at `budget`: each size it grows multiplied by the budget."""
    grows = settings.info.grows
    try:
        return settings.replace(**{size: getattr(settings, size) * budget for size in grows})
    except ConfigError as exc:
        raise ConfigError(f"{settings.spec} at budget {budget}: {exc}") from None


def expand(strategies: Sequence[SearchSettings], budgets: Sequence[int]) -> tuple[Budgeted, ...]:
    """Every family at every budget, family by family; a fixed-cost strategy once."""
    expanded = []
    for family in strategies:
        if not family.info.grows:
            expanded.append(Budgeted(family.spec, None, family))
            continue
        expanded += [Budgeted(family.spec, budget, at_budget(family, budget)) for budget in budgets]
    return tuple(expanded)


def curves(rows: Sequence[StrategySummary], expanded: Sequence[Budgeted]) -> list[Curve]:
    """The summary's rows as one curve per family, its points in budget order; a search not run yet is left out."""
    by_spec = {row.strategy: row for row in rows}
    families: dict[str, list[CurvePoint]] = {}
    for item in expanded:
        row = by_spec.get(item.settings.spec)
        points = families.setdefault(item.family, [])
        if row is None or not row.n:
            continue
        points.append(CurvePoint(item.budget, row.mean_tokens, row.accuracy, row.ci_low, row.ci_high,
                                 row.mean_requests, row.seconds_per_search, dict(row.pass_at)))
    return [Curve(family, tuple(points)) for family, points in families.items()]
