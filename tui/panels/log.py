"""Engine events and errors in plain words."""

from __future__ import annotations

import time

from textual.widgets import RichLog

from tui.state import RunState

MAX_LINES = 1000


class LogPanel(RichLog):
    BORDER_TITLE = "Log"

    def __init__(self, **kwargs):
        super().__init__(max_lines=MAX_LINES, wrap=True, markup=False, **kwargs)

    def show(self, state: RunState) -> None:
        lines, state.log[:] = list(state.log), []
        for line in lines:
            self.note(line)

    def note(self, line: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')}  {line}")
