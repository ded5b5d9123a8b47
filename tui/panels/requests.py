"""The requests a proxy serves, newest first: id, spec, state, tokens, elapsed, the answer's head. The row under
the cursor is the one whose search the other panels show."""

from __future__ import annotations

from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable

from engine.proxy.state import ProxyState

SHOWN = 200
COLUMNS = (("request", 14), ("spec", 12), ("state", 12), ("tokens", 7), ("elapsed s", 9), ("user", 10),
           ("answer (head)", 60))


class RequestsPanel(Vertical):
    BORDER_TITLE = "Requests"

    class Selected(Message):
        def __init__(self, request_id: str):
            super().__init__()
            self.request_id = request_id

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = DataTable(cursor_type="row", zebra_stripes=True, id="requests-table")
        self._rows: dict[str, tuple] = {}
        self.selected: str | None = None  # None: follow the newest request

    def compose(self):
        yield self.table

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.table.add_column(label, width=width, key=label)

    def show(self, state: ProxyState, now: float) -> None:
        ids = list(state.requests)[-SHOWN:][::-1]
        rows = {}
        for request_id in ids:
            request = state.requests[request_id]
            rows[request_id] = (request_id[-12:], request.started.spec, request.state, str(request.tokens),
                                f"{request.elapsed(now):.1f}", request.started.user or "",
                                " ".join(request.answer_head.split()))
        if list(rows) != list(self._rows):
            self.table.clear()
            for request_id, cells in rows.items():
                self.table.add_row(*cells, key=request_id)
            if rows:
                order = list(rows)
                self.table.move_cursor(row=order.index(self.selected) if self.selected in rows else 0)
        else:
            for request_id, cells in rows.items():
                for (label, _), cell, old in zip(COLUMNS, cells, self._rows[request_id], strict=True):
                    if cell != old:
                        self.table.update_cell(request_id, label, cell)
        self._rows = rows
        searching = sum(r.finished is None for r in state.requests.values())
        self.border_subtitle = f"{len(state.requests)} served · {searching} searching"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The user moved the cursor (or the newest row came in under it): show that request's search."""
        if event.row_key is not None and event.row_key.value is not None:
            if event.cursor_row != 0 or self.selected is not None:
                self.selected = event.row_key.value
            self.post_message(self.Selected(event.row_key.value))
