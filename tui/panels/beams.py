"""The live beams: ranked, scored, and the ones pruned this block marked for a moment."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from tui.state import BeamRow, RunState

COLUMNS = (("#", 3), ("score", 9), ("mean logp", 9), ("tokens", 6), ("done", 4))


class BeamsPanel(Vertical):
    BORDER_TITLE = "Beams"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: list[BeamRow] | None = None

    def compose(self) -> ComposeResult:
        table = DataTable(cursor_type="none", zebra_stripes=True, id="beams-table")
        for label, width in COLUMNS:
            table.add_column(label, width=width, key=label)
        table.add_column("text (tail)", key="text")
        yield table

    def show(self, state: RunState) -> None:
        rows = state.visible_beams()
        if rows == self._shown:
            return
        self._shown = rows
        table = self.query_one(DataTable)
        text_width = max(10, self.size.width - sum(w for _, w in COLUMNS) - 14)
        table.clear()
        kept_rank = 0
        for row in rows:
            if row.pruned:
                rank, style = "✗", "dim red strike"
            else:
                kept_rank += 1
                rank, style = str(kept_rank), ""
            tail = " ".join(row.text_tail.split())[-text_width:]
            table.add_row(
                Text(rank, style=style, justify="right"),
                Text(f"{row.score:.4f}", style=style, justify="right"),
                Text(f"{row.mean_logprob:.4f}", style=style, justify="right"),
                Text(str(row.tokens), style=style, justify="right"),
                Text("✓" if row.finished else "", style=style, justify="center"),
                Text(tail, style=style or "", no_wrap=True, overflow="ellipsis"),
            )
        kept = sum(not row.pruned for row in rows)
        pruned = len(rows) - kept
        self.border_subtitle = f"{kept} kept" + (f" · {pruned} pruned" if pruned else "")
