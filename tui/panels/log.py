"""The run's log: engine events and errors in plain words (tui.log_lines), stamped with the time."""

from __future__ import annotations

from collections.abc import Callable

from textual.widgets import RichLog

from engine.run_state import RunState
from tui.log_lines import log_line

MAX_LINES = 1000


class LogPanel(RichLog):
    BORDER_TITLE = "Log"

    def __init__(self, clock: Callable[[], float], **kwargs):
        # RichLog renders every line at least `min_width` wide (78 by default), so in a panel narrower than that
        # each wrapped line lost its last characters past the edge.
        super().__init__(max_lines=MAX_LINES, wrap=True, markup=False, min_width=1, **kwargs)
        self.clock = clock
        self.started = clock()

    def show(self, state: RunState) -> None:
        lines, state.log[:] = list(state.log), []
        for at, entry in lines:
            self.note(at, log_line(entry))

    def note(self, at: float, line: str) -> None:
        """Stamped with seconds since launch, which reads easier than wall time when comparing runs."""
        self.write(f"{at - self.started:7.1f}s  {line}")
