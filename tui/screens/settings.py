"""Switch backend, endpoint and model without restarting the app."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from engine.errors import ConfigError
from engine.settings import BACKENDS, BackendSettings
from tui.panels.keys_bar import KeysBar


class SettingsScreen(ModalScreen[BackendSettings | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel", id="settings_cancel")]

    def __init__(self, settings: BackendSettings):
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        s = self.settings
        with VerticalScroll(id="settings-dialog", classes="dialog"):  # scrolls to Apply on a short terminal
            yield Label("Backend settings · Apply restarts the search · Esc cancels")
            yield Label("backend")
            yield Select([(name, name) for name in BACKENDS], value=s.backend, allow_blank=False, id="backend")
            yield Label("base URL (openai)")
            yield Input(s.base_url or "", placeholder="http://127.0.0.1:8000/v1", id="base_url")
            yield Label("model (openai, tinker)")
            yield Input(s.model or "", placeholder="model name", id="model")
            yield Label("tokenizer (.gguf, 'embedded' or Hugging Face name; default: the model)")
            yield Input(s.tokenizer or "", id="tokenizer")
            yield Label("max concurrent requests")
            yield Input(str(s.max_concurrent), type="integer", id="max_concurrent")
            yield Label("", id="settings-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")
        yield KeysBar()  # the dialog's own keys: the dashboard's bar under it shows keys that do not act now

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        text = lambda widget_id: self.query_one(f"#{widget_id}", Input).value.strip() or None  # noqa: E731
        backend = self.query_one("#backend", Select).value
        try:
            settings = self.settings.replace(
                backend=backend,
                base_url=text("base_url") if backend == "openai" else None,
                model=text("model") if backend != "local" else None,
                tokenizer=text("tokenizer") if backend != "local" else None,
                max_concurrent=int(text("max_concurrent") or 0),
                latency=self.settings.latency if backend == "local" else 0.0,
                threads=self.settings.threads if backend == "local" else None,
                weights=self.settings.weights if backend == "local" else "auto",
                api=self.settings.api if backend == "openai" else "completions",
            )
        except ConfigError as exc:
            self.query_one("#settings-error", Label).update(str(exc))
            return
        self.dismiss(settings)
