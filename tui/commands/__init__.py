"""The headless subcommands: flags in, the engine called, tables out."""

from __future__ import annotations

from rich.console import Console

PIPED_WIDTH = 140  # piped or redirected, Rich would assume 80 columns and cut the tables' numbers


def stdout_console() -> Console:
    """Standard output: the terminal's width, or a wide one when piped, so a table keeps its numbers."""
    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)
