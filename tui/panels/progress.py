"""Where the search is: block k of N, tokens out of the budget, requests in flight out of the cap."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar

from tui.panels.line import Line
from tui.state import RunState


class ProgressPanel(Vertical):
    BORDER_TITLE = "Progress"

    def compose(self) -> ComposeResult:
        for name in ("block", "tokens", "flight"):
            with Horizontal(classes="progress-row"):
                yield Line(id=f"{name}-label")
                yield ProgressBar(id=f"{name}-bar", show_eta=False, show_percentage=False)

    def show(self, state: RunState) -> None:
        search = state.search
        done_blocks = len(state.blocks)
        generated = min(search.max_tokens, done_blocks * search.block_tokens)
        self.border_subtitle = state.status
        self.query_one("#block-label", Line).text = f"block {state.block} of {state.max_blocks}"
        self.query_one("#block-bar", ProgressBar).update(total=state.max_blocks, progress=done_blocks)
        self.query_one("#tokens-label", Line).text = f"tokens {generated} of {search.max_tokens}"
        self.query_one("#tokens-bar", ProgressBar).update(total=search.max_tokens, progress=generated)
        self.query_one("#flight-label", Line).text = f"in flight {state.in_flight} of {state.cap}"
        self.query_one("#flight-bar", ProgressBar).update(total=state.cap, progress=state.in_flight)
