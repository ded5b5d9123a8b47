"""The eval summary's columns as text: one formatter per column, shared by `beamtui eval`'s tables and the eval
dashboard's panel, so both read the same numbers the same way."""

from __future__ import annotations

from collections.abc import Callable

from engine.eval.summary import StrategySummary

Cell = Callable[[StrategySummary], str]

ACCURACY = ["accuracy (95% CI)", "n", "none", "Δ", "p"]
COST = ["tokens", "×tok", "×req", "×time", "tok/right"]
# What a panel 80 columns wide shows: whether a strategy is better, and what it costs.
NARROW = ["accuracy (95% CI)", "Δ", "p", "×tok", "×time"]


def _multiple(value: float | None) -> str:
    return "–" if value is None else f"x{value:.2f}"


def partly_timed(row: StrategySummary) -> bool:
    """Its time per search covers fewer of its searches than the output holds (a run was killed outright)."""
    return row.timed_searches < row.n


def pass_ks(rows: list[StrategySummary]) -> list[int]:
    """The k of pass@k worth a column: none when every strategy ran once per problem."""
    return sorted({k for row in rows for k in row.pass_at}) if any(len(row.pass_at) > 1 for row in rows) else []


def summary_cells(rows: list[StrategySummary]) -> dict[str, Cell]:
    """Every column the summary has for these rows, in the order a wide table shows them."""
    return {
        "accuracy (95% CI)": lambda r: f"{r.accuracy:.1%} ({r.ci_low:.0%}-{r.ci_high:.0%})",
        "n": lambda r: str(r.n), "none": lambda r: str(r.no_answer), "tokens": lambda r: f"{r.mean_tokens:.1f}",
        "×tok": lambda r: _multiple(r.x_tokens), "×req": lambda r: _multiple(r.x_requests),
        "×time": lambda r: _multiple(r.x_time) + ("*" if r.x_time is not None and partly_timed(r) else ""),
        **{f"pass@{k}": (lambda r, k=k: "–" if k not in r.pass_at else f"{r.pass_at[k]:.1%}") for k in pass_ks(rows)},
        "tok/right": lambda r: "–" if r.tokens_per_correct is None else f"{r.tokens_per_correct:.0f}",
        "Δ": lambda r: "–" if r.diff_vs_first is None else f"{r.diff_vs_first:+.1%}",
        "p": lambda r: "–" if r.mcnemar_p is None else f"{r.mcnemar_p:.2g}",
    }


def summary_notes(first: str) -> dict[str, str]:
    """What the columns mean, keyed by the column that brings the note into a table."""
    return {
        "Δ": f"Δ: paired accuracy difference against {first}; p: exact McNemar",
        "×tok": (f"×tok, ×req, ×time: tokens, requests and wall time per search as multiples of {first}'s (time: "
                 "each strategy's searches timed on their own at the same concurrency; * timed over part of its "
                 "searches, a run having been killed before it could write its timing)"),
        "pass@1": "pass@k: unbiased estimate from the samples per problem",
    }
