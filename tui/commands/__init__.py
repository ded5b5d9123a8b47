"""The headless subcommands: flags in, the engine called, tables out."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console

PIPED_WIDTH = 140  # piped or redirected, Rich would assume 80 columns and cut the tables' numbers


def stdout_console() -> Console:
    """Standard output: the terminal's width, or a wide one when piped, so a table keeps its numbers."""
    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


def check_dashboard_keymap(values: Mapping[str, object]) -> None:
    """A config file's [keymap], checked against the dashboard's bindings by every command that reads the file,
    so a typo is refused the same way whether the file is first used by `run` or by the dashboard. Textual is
    imported only when there is a keymap to check (82 ms of every headless start otherwise)."""
    if values.get("keymap"):
        from tui.bindings import dashboard_scopes
        from tui.keymap import check_keymap

        check_keymap(values["keymap"], dashboard_scopes())
