"""Edit the prompt; Enter starts a new search with it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel", id="prompt_cancel")]

    def __init__(self, prompt: str):
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog", classes="dialog"):
            yield Label("Prompt · Enter starts a new search · Esc cancels")
            yield Input(self.prompt, id="prompt-input", select_on_focus=False)
            yield Label("", id="prompt-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value)
        else:
            self.query_one("#prompt-error", Label).update("the prompt is empty")
