"""Every key of the dashboard with a sentence on what it does: what `?` opens when the key bar is too narrow."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tui.panels.keys_bar import KeysBar

SENTENCE_WIDTH = 48  # the dialog fits an 80-column terminal


class KeysScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "close", id="keys_close")]

    def __init__(self, bindings: Sequence[Binding], key_display: Callable[[Binding], str],
                 keymap: Mapping[str, str]):
        super().__init__()
        self.rows = []
        for binding in bindings:
            if binding.id in keymap:  # as the user's [keymap] set it
                binding = replace(binding, key=keymap[binding.id], key_display=None)
            self.rows.append((key_display(binding), binding.description, binding.tooltip))
        self.rows.append(("^p", "palette", "Find any action by name: the command palette."))

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="keys-dialog", classes="dialog"):
            yield Label("Keys · Esc closes · the [keymap] table of the config file changes them", markup=False)
            table = DataTable(id="keys-table", cursor_type="none", zebra_stripes=True)
            table.add_column("key", width=5)
            table.add_column("does", width=9)
            table.add_column("what for", width=SENTENCE_WIDTH)
            for key, name, sentence in self.rows:
                table.add_row(key, name, Text(sentence), height=None)  # wrapped to the column, as tall as it needs
            yield table
        yield KeysBar()
