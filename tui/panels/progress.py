"""Where the search is: block k of N, tokens out of the budget, requests in flight out of the cap."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar

from engine.run_state import RunState
from tui.panels.line import Line


class ProgressPanel(Vertical):
    BORDER_TITLE = "Progress"

    ROWS = ("block", "tokens", "flight")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lines = {name: Line(id=f"{name}-label") for name in self.ROWS}
        self.bars = {name: ProgressBar(id=f"{name}-bar", show_eta=False, show_percentage=False) for name in self.ROWS}

    def compose(self) -> ComposeResult:
        for name in self.ROWS:
            with Horizontal(classes="progress-row"):
                yield self.lines[name]
                yield self.bars[name]

    def show(self, state: RunState) -> None:
        search = state.search
        if self.border_subtitle != state.status:  # a new subtitle costs a screen-wide repaint
            self.border_subtitle = state.status
        stage = f" · {state.stage}" if state.stage and not state.finished else ""
        self.lines["block"].text = f"block {state.block} of {state.max_blocks}{stage}"
        self._bar("block", state.max_blocks, state.blocks_done)
        self.lines["tokens"].text = f"tokens {state.answer_tokens} of {search.max_tokens}"
        self._bar("tokens", search.max_tokens, state.answer_tokens)
        self.lines["flight"].text = f"in flight {state.in_flight} of {state.cap}"
        self._bar("flight", state.cap, state.in_flight)

    def _bar(self, name: str, total: int, progress: int) -> None:
        bar = self.bars[name]
        if (bar.total, bar.progress) != (total, progress):
            bar.update(total=total, progress=progress)
