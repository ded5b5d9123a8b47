"""The beamtui dashboard: a live search on the engine's own thread, and knobs to turn while it runs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Header

from engine.backends.factory import check_backend
from engine.errors import ConfigError
from engine.events import SearchFinished
from engine.registry import strategy_names
from engine.run_state import RunState
from engine.settings import ZERO_ALLOWED, BackendSettings, SearchSettings
from tui.bindings import DASHBOARD_BINDINGS, TEMPERATURE_STEP, dashboard_scopes
from tui.engine_host import EngineBatch, EngineFailed, EngineHost, SearchOrder
from tui.keymap import check_keymap
from tui.mode_times import ModeTimes
from tui.options import SERVED_ENV
from tui.panels.answer import AnswerPanel
from tui.panels.keys_bar import KeysBar
from tui.panels.log import LogPanel
from tui.panels.population import PopulationPanel
from tui.panels.progress import ProgressPanel
from tui.panels.prompt_editor import PromptEditor
from tui.panels.settings_bar import SettingsBar, describe
from tui.panels.throughput import ThroughputPanel
from tui.panels.timings import TimingsPanel
from tui.panels.tree import TreePanel
from tui.screens.keys import KeysScreen
from tui.screens.settings import SettingsScreen

REFRESH_HZ = 10
RESTART_DEBOUNCE_S = 0.3  # a burst of key presses starts one search, not one per press
NARROW_WIDTH = 120
MAX_COMPARISONS = 6
GIL_SWITCH_INTERVAL_S = 0.001


class BeamtuiApp(App):
    CSS_PATH = "beamtui.tcss"
    TITLE = "beamtui"
    SUB_TITLE = "inference-time search, live"
    BINDINGS = DASHBOARD_BINDINGS

    def __init__(
        self,
        search: SearchSettings,
        backend: BackendSettings,
        *,
        host_factory: Callable[[Callable], EngineHost] = EngineHost,
        clock: Callable[[], float] = time.monotonic,
        save_dir: Path = Path("."),
        seeds: random.Random | None = None,
        keymap: dict[str, str] | None = None,
    ):
        super().__init__()
        self.keys = check_keymap(keymap or {}, dashboard_scopes())
        self.search = search
        self.backend = backend
        self.clock = clock
        self.save_dir = save_dir
        self.seeds = seeds or random.Random()
        # Without a seed from the user, one is drawn per rerun and kept while knobs turn, so the two runs of a
        # sequential/parallel pair compare like with like.
        self.pair_seed = self._new_seed()
        self.host = host_factory(self.post_message)
        self.state = RunState("-", search, backend, clock=clock, status="idle")
        self.comparisons: dict[tuple, ModeTimes] = {}
        self.prompts: list[str] = []  # every prompt run, numbered from 1 in the Timings panel
        self._runs = 0
        self._restart_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield SettingsBar(id="settings-bar")
        with Grid(id="dashboard"):
            yield PopulationPanel(id="population")
            yield TreePanel(id="tree")
            yield AnswerPanel(id="answer")
            yield ProgressPanel(id="progress")
            yield ThroughputPanel(id="throughput")
            yield TimingsPanel(id="timings")
            yield LogPanel(self.clock, id="log")
        yield PromptEditor(id="prompt-editor", classes="dialog")
        yield KeysBar(id="keys-bar")

    def on_mount(self) -> None:
        self.set_keymap(self.keys)
        self._panels = [self.query_one(kind) for kind in (PopulationPanel, TreePanel, ProgressPanel,
                                                          ThroughputPanel, AnswerPanel, LogPanel)]
        self._timings = self.query_one(TimingsPanel)
        self.run_worker(self.host.serve, thread=True, group="engine", name="engine loop", exclusive=True)
        self._show_settings()
        self.start_search()
        self.refresh_timer = None
        self.call_after_refresh(self._start_refreshing)

    _dashboard_actions = frozenset(binding.action.split("(")[0] for binding in BINDINGS)

    def _start_refreshing(self) -> None:
        self.refresh_timer = self.set_interval(1 / REFRESH_HZ, self.refresh_panels)

    def on_resize(self) -> None:
        self.screen.set_class(self.size.width < NARROW_WIDTH, "narrow")

    # Runs ----------------------------------------------------------------------------------------------------

    def _new_seed(self) -> int | None:
        return None if self.search.seed is not None else self.seeds.getrandbits(31)

    @property
    def effective_search(self) -> SearchSettings:
        """The settings a run is started with: the user's, with the pair's seed when they gave none."""
        return self.search if self.search.seed is not None else self.search.replace(seed=self.pair_seed)

    def start_search(self) -> None:
        """Cancel whatever runs and start a search with the current settings."""
        if self._restart_timer is not None:
            self._restart_timer.stop()
            self._restart_timer = None
        self.state.cancel()
        log = self.state.log
        self._runs += 1
        search = self.effective_search
        self.state = RunState(f"run-{self._runs}", search, self.backend, clock=self.clock)
        self.state.log[:0] = log  # lines of the abandoned run not shown yet
        self.state.note(f"starting: {describe(search, self.backend)}")
        self.host.submit(SearchOrder(self.state.run_id, search, self.backend))

    def restart_soon(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.stop()
        self._restart_timer = self.set_timer(RESTART_DEBOUNCE_S, self.start_search)

    def on_engine_batch(self, message: EngineBatch) -> None:
        for event in message.events:
            if event.run_id != self.state.run_id:
                continue  # from a run the user has already replaced
            self.state.apply(event)
            if isinstance(event, SearchFinished) and not event.result.error:
                self._record_timing(event.result.settings, event.result.wall_s)

    def on_engine_failed(self, message: EngineFailed) -> None:
        if message.run_id == self.state.run_id:
            self.state.fail(message.error)
            self.notify(message.error, title="search failed", severity="error", timeout=8)

    def _comparison_key(self, settings: SearchSettings) -> tuple:
        return settings.replace(mode="parallel"), self.backend

    def _record_timing(self, settings: SearchSettings, wall_s: float) -> None:
        key = self._comparison_key(settings)
        if settings.prompt not in self.prompts:
            self.prompts.append(settings.prompt)
        label = f"{settings.spec} {settings.block_tokens}/{settings.max_tokens}"
        times = self.comparisons.pop(key, None) or ModeTimes(label, settings.seed,
                                                              self.prompts.index(settings.prompt) + 1)
        setattr(times, settings.mode, wall_s)
        self.comparisons[key] = times  # most recent last
        while len(self.comparisons) > MAX_COMPARISONS:
            self.comparisons.pop(next(iter(self.comparisons)))

    def refresh_panels(self) -> None:
        """Redraw every panel from the current run's state: ten times a second, whatever the event rate."""
        state = self.state
        for panel in self._panels:
            panel.show(state)
        current = self.comparisons.get(self._comparison_key(state.search))
        self._timings.show(state, list(self.comparisons.values()), current)

    def _show_settings(self) -> None:
        self.query_one(SettingsBar).show_settings(self.effective_search, self.backend)

    def _change(self, **changes) -> None:
        try:
            self.search = self.search.replace(**changes)
        except ConfigError as exc:
            self.notify(str(exc), severity="warning")
            return
        self._show_settings()
        self.restart_soon()

    # Knobs ---------------------------------------------------------------------------------------------------

    def action_width(self, delta: int) -> None:
        field = self.search.width_field
        if field is None:
            self.notify(f"{self.search.strategy} has no width", severity="warning")
            return
        self._change(**{field: max(1, getattr(self.search, field) + delta)})

    def action_depth(self, delta: int) -> None:
        field = self.search.info.depth
        if field is None:
            self.notify(f"{self.search.strategy} has no depth for ] and [ to turn", severity="warning")
            return
        self._change(**{field: max(ZERO_ALLOWED.get(field, 1), getattr(self.search, field) + delta)})

    def action_temperature(self, direction: int) -> None:
        current = self.search.proposal_temperature
        self._change(temperature=round(max(0.0, current + direction * TEMPERATURE_STEP), 4))

    def action_block_tokens(self, factor: float) -> None:
        block = int(min(self.search.max_tokens, max(1, round(self.search.block_tokens * factor))))
        self._change(block_tokens=block)

    def action_cycle_strategy(self) -> None:
        names = strategy_names()
        self._change(strategy=names[(names.index(self.search.strategy) + 1) % len(names)])

    def action_toggle_mode(self) -> None:
        self._change(mode="sequential" if self.search.mode == "parallel" else "parallel")

    def action_scroll_panels(self, where: str) -> None:
        """The stacked panels when they overflow the screen, else the log."""
        dashboard = self.query_one("#dashboard")
        target = dashboard if dashboard.max_scroll_y > 0 else self.query_one(LogPanel)
        getattr(target, f"scroll_{where}")(animate=False)

    def action_rerun(self) -> None:
        self.pair_seed = self._new_seed()
        self._show_settings()
        self.start_search()

    def action_edit_prompt(self) -> None:
        self.query_one(PromptEditor).open(self.search.prompt)

    def on_prompt_editor_submitted(self, message: PromptEditor.Submitted) -> None:
        self.search = self.search.replace(prompt=message.prompt)
        self._show_settings()
        self.start_search()

    def action_backend_settings(self) -> None:
        def apply(settings: BackendSettings | None) -> None:
            if settings is not None:
                self.backend = settings
                self._show_settings()
                self.start_search()

        self.push_screen(SettingsScreen(self.backend), apply)

    def action_save(self) -> None:
        """The run as JSON in `save_dir` (where beamtui started); a run still going is saved as partial."""
        partial = not self.state.finished
        name = f"beamtui-{time.strftime('%Y%m%d-%H%M%S')}-{self.state.run_id}{'-partial' if partial else ''}.json"
        path = (self.save_dir / name).resolve()
        try:
            path.write_text(json.dumps(self.run_summary(), indent=2, ensure_ascii=False))
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror}", severity="error")
            return
        said = f"saved the {'partial ' if partial else ''}run to {path}"
        self.state.note(said)
        self.notify(said)

    def run_summary(self) -> dict:
        state = self.state
        result = state.result
        return {
            "run_id": state.run_id,
            "status": state.status,
            "partial": not state.finished,  # saved while the search ran: no result yet
            "settings": {"search": vars(state.search), "backend": vars(state.backend)},
            "seed": state.seed,
            "events": {"requests": state.requests_done, "retries": state.retries, "failures": state.failures,
                       "tokens": state.tokens, "rounds": len(state.rounds)},
            "result": result.to_json() if result else None,
            "error": state.error,
            "rounds": [row.as_json() for row in state.rounds],
            "measured": [vars(times) for times in self.comparisons.values()],
        }

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The dashboard's keys are off while the prompt or a dialog takes typing."""
        if action in self._dashboard_actions:
            return self.screen is self.screen_stack[0] and not self.query_one(PromptEditor).display
        return True

    def action_show_keys(self) -> None:
        self.push_screen(KeysScreen(self.BINDINGS, self.get_key_display, self.keys))

    async def action_quit(self) -> None:
        self.host.shutdown()
        self.exit()

    def on_unmount(self) -> None:
        self.host.shutdown()  # however the app ends, the engine's thread must end with it

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if binding.id != "quit":
                if binding.id in self.keys:
                    binding = replace(binding, key=self.keys[binding.id], key_display=None)
                key = self.get_key_display(binding)
                yield SystemCommand(
                    f"{binding.description} ({key})", binding.tooltip,
                    lambda action=binding.action: self.run_action(action),
                )


def die_with_parent(server_pid: str) -> None:
    """A dashboard `serve` started is killed when `serve` ends, even by SIGKILL (Linux's parent-death signal);
    without a server to talk to it would go on decoding for nobody."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if server_pid.isdigit() and os.getppid() != int(server_pid):  # it ended before the signal was armed
        os._exit(1)


def launch(args) -> int:
    """Validate the flags (and config file), check the backend, then open the dashboard."""
    from engine.settings import settings_from
    from tui.options import fail, merged_values

    try:
        values = merged_values(args)
        search, backend = settings_from(values)
        if os.environ.get(SERVED_ENV):  # a browser's visitor may change the endpoint, never where the key goes
            die_with_parent(os.environ[SERVED_ENV])
            backend = backend.pinned_key()
        app = BeamtuiApp(search, backend, keymap=values.get("keymap"))
        if backend.backend != "local":
            asyncio.run(check_backend(backend))  # a missing key or dead endpoint fails here, before the screen opens
    except ConfigError as exc:
        fail(str(exc), 2)
    # The engine thread runs Python too; a shorter GIL switch interval keeps key presses from queueing behind it.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    app.run()
    return 0

