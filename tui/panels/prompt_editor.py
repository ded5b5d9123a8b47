"""Edit the prompt over the dashboard; Enter starts a new search with it.

A widget on the dashboard's own screen, not a modal screen: Textual draws a modal screen over a tinted re-render
of the whole dashboard, 55 ms idle and over 100 ms with 100 requests in flight on a 2-core EPYC
(benchmarks.tui_responsiveness). Positioned absolutely on a layer of its own, it changes no one's layout.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label


class PromptEditor(Vertical):
    BINDINGS = [Binding("escape", "close", "cancel", id="prompt_cancel")]

    class Submitted(Message):
        def __init__(self, prompt: str):
            super().__init__()
            self.prompt = prompt

    def compose(self) -> ComposeResult:
        yield Label("Prompt · typing replaces it, ← or → edits it · Enter starts a new search · Esc cancels")
        yield Input(id="prompt-input", select_on_focus=False)
        yield Label("", id="prompt-error", classes="error")

    def open(self, prompt: str) -> None:
        """The current prompt, all of it selected: what is typed replaces it, an arrow key keeps it to edit."""
        field = self.query_one(Input)
        field.value = prompt
        self.query_one("#prompt-error", Label).update("")
        self.display = True
        field.focus()
        field.select_all()

    def action_close(self) -> None:
        self.display = False
        self.screen.set_focus(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.query_one("#prompt-error", Label).update("the prompt is empty")
            return
        self.action_close()
        self.post_message(self.Submitted(event.value))
