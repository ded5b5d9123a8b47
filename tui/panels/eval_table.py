"""The eval's summary, filling in as searches finish: one row per strategy, as `beamtui eval` prints it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from engine.eval.summary import StrategySummary
from tui.summary_cells import NARROW, summary_cells


class EvalTablePanel(Vertical):
    BORDER_TITLE = "Eval"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = DataTable(cursor_type="none", id="eval-rows")
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield self.table

    def show(self, rows: list[StrategySummary], done: int, total: int, status: str, *, narrow: bool) -> None:
        shown = (tuple(rows), done, status, narrow)
        if shown == self._shown:
            return
        self._shown = shown
        self.border_subtitle = f"{done} of {total} searches · {status}"
        cells = summary_cells(rows)
        names = NARROW if narrow else list(cells)
        self.table.clear(columns=True)
        self.table.add_columns("strategy", *names)
        for row in rows:
            self.table.add_row(row.strategy, *(cells[name](row) for name in names))
