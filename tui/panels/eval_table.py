"""The eval's summary, filling in as searches finish: one row per strategy, as `beamtui eval` prints it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from engine.eval_summary import StrategySummary

COLUMNS = (("strategy", 14), ("accuracy (95% CI)", 19), ("n", 5), ("none", 5), ("tokens", 7), ("requests", 8),
           ("tok/right", 9), ("Δ", 8), ("p", 6))


class EvalTablePanel(Vertical):
    BORDER_TITLE = "Eval"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = DataTable(cursor_type="none", id="eval-rows")
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield self.table

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.table.add_column(label, width=width)

    def show(self, rows: list[StrategySummary], done: int, total: int, status: str) -> None:
        shown = (tuple(rows), done, status)
        if shown == self._shown:
            return
        self._shown = shown
        self.border_subtitle = f"{done} of {total} searches · {status}"
        self.table.clear()
        for row in rows:
            self.table.add_row(
                row.strategy, f"{row.accuracy:.1%} ({row.ci_low:.0%}-{row.ci_high:.0%})", str(row.n),
                str(row.no_answer), f"{row.mean_tokens:.1f}", f"{row.mean_requests:.1f}",
                "–" if row.tokens_per_correct is None else f"{row.tokens_per_correct:.0f}",
                "–" if row.diff_vs_first is None else f"{row.diff_vs_first:+.1%}",
                "–" if row.mcnemar_p is None else f"{row.mcnemar_p:.2g}",
            )
