"""The headless subcommands: flags in, the engine called, tables out."""

from __future__ import annotations

import gc
from collections.abc import Mapping

from rich.console import Console

from engine.backends.factory import open_sampler
from engine.sampler import Sampler
from engine.settings import BackendSettings

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


# A young generation of 20,000 objects rather than 700: a request makes a few hundred, and a 300-question gen at
# cap 50 ran ~250 young collections (30 ms in all, timed with gc.callbacks).
YOUNG_OBJECTS = 20_000


async def open_backend(settings: BackendSettings) -> Sampler:
    """The backend, started, and the heap as it stands then set aside from the garbage collector: the openai
    SDK alone brings hundreds of thousands of objects, and each full collection walked them all (two in a
    300-question gen, up to 50 ms each, stalling every request in flight)."""
    sampler = await open_sampler(settings)
    gc.freeze()  # no collection first: it would walk them all once more, on the way to the first request
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
    return sampler
