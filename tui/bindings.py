"""The dashboard's keys, each with an id a [keymap] can rebind, and the scopes in which they are active."""

from __future__ import annotations

from textual.binding import Binding

from engine.registry import strategy_names
from tui.panels.prompt_editor import PromptEditor
from tui.screens.keys import KeysScreen
from tui.screens.settings import SettingsScreen

TEMPERATURE_STEP = 0.05

# Priority: the App acts on a key the moment it arrives instead of after a round trip through the focused
# widget, each hop waiting out a frame (~45 ms with 100 requests in flight, benchmarks.tui_responsiveness).
# `check_action` hands every key to the text fields while one is being edited.
# In the order the key bar shows them: when it is too narrow for all, the first ones stay and `?` lists all.
DASHBOARD_BINDINGS = [
    Binding("q", "quit", "quit", id="quit", priority=True, tooltip="Quit beamtui; the search stops with it."),
    Binding("question_mark", "show_keys", "keys", key_display="?", id="show_keys", priority=True,
            tooltip="List every key with what it does."),
    Binding("p", "edit_prompt", "prompt", id="edit_prompt", priority=True,
            tooltip="Edit the prompt; Enter starts a new search with it."),
    Binding("r", "rerun", "rerun", id="rerun", priority=True,
            tooltip="Run the search again with a fresh seed."),
    Binding("a", "cycle_strategy", "strategy", id="cycle_strategy", priority=True,
            tooltip=f"Switch to the next strategy: {', '.join(strategy_names())}."),
    Binding("m", "toggle_mode", "mode", id="toggle_mode", priority=True,
            tooltip="Switch between parallel and sequential requests; the same seed runs again, so the "
                    "Timings panel can compare the two measured times."),
    Binding("c", "backend_settings", "backend", id="backend_settings", priority=True,
            tooltip="Change the backend, endpoint, model or request cap; Apply restarts the search."),
    Binding("s", "save", "save", id="save_run", priority=True,
            tooltip="Save the run (settings, result, timings) as JSON in the directory beamtui started in; "
                    "a run still going is saved as partial."),
    Binding("plus", "width(1)", "width+", id="width_up", priority=True,
            tooltip="One more beam, chain, particle or answer, by strategy."),
    Binding("minus", "width(-1)", "width-", id="width_down", priority=True,
            tooltip="One fewer beam, chain, particle or answer."),
    Binding("right_square_bracket", "depth(1)", "n+", key_display="]", id="depth_up", priority=True,
            tooltip="More continuations per beam (beam) or Metropolis-Hastings steps per block (mcmc)."),
    Binding("left_square_bracket", "depth(-1)", "n-", key_display="[", id="depth_down", priority=True,
            tooltip="Fewer continuations per beam (beam) or steps per block (mcmc)."),
    Binding("t", "temperature(1)", "T+", id="temperature_up", priority=True,
            tooltip=f"Raise the proposal temperature by {TEMPERATURE_STEP:g}."),
    Binding("T", "temperature(-1)", "T-", id="temperature_down", priority=True,
            tooltip=f"Lower the proposal temperature by {TEMPERATURE_STEP:g}."),
    Binding("b", "block_tokens(2)", "block+", id="block_tokens_up", priority=True,
            tooltip="Double the tokens per block."),
    Binding("B", "block_tokens(0.5)", "block-", id="block_tokens_down", priority=True,
            tooltip="Halve the tokens per block."),
    # Off the key bar: the panels stacked in one column at small sizes scroll whatever has focus.
    Binding("pagedown", "scroll_panels('page_down')", "page down", id="scroll_page_down", priority=True, show=False,
            tooltip="Scroll the panels a page down (at small sizes, where they stack), or the log."),
    Binding("pageup", "scroll_panels('page_up')", "page up", id="scroll_page_up", priority=True, show=False,
            tooltip="Scroll the panels a page up, or the log."),
    Binding("home", "scroll_panels('home')", "top", id="scroll_home", priority=True, show=False,
            tooltip="Scroll the panels to the top, or the log."),
    Binding("end", "scroll_panels('end')", "bottom", id="scroll_end", priority=True, show=False,
            tooltip="Scroll the panels to the bottom, or the log."),
]


def dashboard_scopes() -> list[list[Binding]]:
    """The bindings active at once: the dashboard's, and each dialog's over them."""
    return [DASHBOARD_BINDINGS, *([*screen.BINDINGS, *DASHBOARD_BINDINGS] for screen in
                                  (SettingsScreen, PromptEditor, KeysScreen))]
