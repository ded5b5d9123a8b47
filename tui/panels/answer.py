"""The best beam's text, live, and the final answer when the search ends."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.run_state import RunState


class AnswerPanel(VerticalScroll):
    BORDER_TITLE = "Answer"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self.text = Static(id="answer-text", markup=False)

    def compose(self) -> ComposeResult:
        yield self.text

    def show(self, state: RunState) -> None:
        shown = (state.best_text, state.best_score, state.status, state.answer_kind)
        if shown == self._shown:
            return
        self._shown = shown
        final = state.status == "finished"
        self.border_title = f"Answer · final · {state.answer_kind}" if final else "Answer · best so far"
        score = state.best_score
        self.border_subtitle = "" if score is None else f"{state.search.info.score_is} {score:.4f}"
        self.text.update(state.best_text.strip() or "…")
