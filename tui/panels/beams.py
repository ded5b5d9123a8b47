"""The live beams: ranked, scored, and the ones pruned this block marked for a moment."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from tui.state import RunState

COLUMNS = (("#", 3), ("score", 9), ("mean logp", 9), ("tokens", 6), ("done", 4))


class BeamsPanel(Vertical):
    BORDER_TITLE = "Beams"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self.table = DataTable(cursor_type="none", zebra_stripes=True, id="beams-table")

    def compose(self) -> ComposeResult:
        yield self.table

    def show(self, state: RunState) -> None:
        rows = state.visible_beams()
        if (rows, self.size) == self._shown or not self.size.width:
            return
        self._shown = (rows, self.size)
        table = self.table
        text_width = max(10, self.size.width - sum(w for _, w in COLUMNS) - 2 * (len(COLUMNS) + 1) - 4)
        table.clear(columns=True)  # columns too: an auto-width column never shrinks back
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        table.add_column("text (tail)", width=text_width)
        kept_rank = 0
        room = max(1, self.size.height - 3)  # a wide search has more beams than rows: build only what shows
        for row in rows[:room]:
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
        hidden = len(rows) - min(len(rows), room)
        self.border_subtitle = (f"{kept} kept" + (f" · {pruned} pruned" if pruned else "")
                                + (f" · {hidden} more below" if hidden else ""))
