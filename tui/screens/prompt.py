"""Edit the prompt; Enter starts a new search with it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    """Installed once and shown again on each `p`: building a dialog per key press costs ~70 ms."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel", id="prompt_cancel")]

    def __init__(self):
        super().__init__()
        self.input = Input(id="prompt-input", select_on_focus=False)
        self.error = Label("", id="prompt-error", classes="error")

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog", classes="dialog"):
            yield Label("Prompt · Enter starts a new search · Esc cancels")
            yield self.input
            yield self.error

    def edit(self, prompt: str) -> None:
        self.input.value = prompt
        self.error.update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value)
        else:
            self.error.update("the prompt is empty")
