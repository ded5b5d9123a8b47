"""The beamtui dashboard: a live beam search on the engine's own thread, and knobs to turn while it runs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Footer, Header

from engine.backends import open_sampler
from engine.errors import ConfigError
from engine.events import SearchFinished
from engine.settings import BackendSettings, SearchSettings
from tui.engine_host import EngineBatch, EngineFailed, EngineHost, SearchOrder
from tui.panels.answer import AnswerPanel
from tui.panels.beams import BeamsPanel
from tui.panels.log import LogPanel
from tui.panels.progress import ProgressPanel
from tui.panels.settings_bar import SettingsBar, describe
from tui.panels.throughput import ThroughputPanel
from tui.panels.timings import ModeTimes, TimingsPanel
from tui.screens.prompt import PromptScreen
from tui.screens.settings import SettingsScreen
from tui.state import RunState

REFRESH_HZ = 10
RESTART_DEBOUNCE_S = 0.3  # a burst of key presses starts one search, not one per press
NARROW_WIDTH = 120
TEMPERATURE_STEP = 0.05
MAX_COMPARISONS = 6
GIL_SWITCH_INTERVAL_S = 0.001


class BeamtuiApp(App):
    CSS_PATH = "beamtui.tcss"
    TITLE = "beamtui"
    SUB_TITLE = "block-wise power beam search"
    BINDINGS = [
        Binding("plus", "beam_width(1)", "width+", id="beam_width_up"),
        Binding("minus", "beam_width(-1)", "width-", id="beam_width_down"),
        Binding("right_square_bracket", "n_per_beam(1)", "n+", key_display="]", id="n_per_beam_up"),
        Binding("left_square_bracket", "n_per_beam(-1)", "n-", key_display="[", id="n_per_beam_down"),
        Binding("t", "temperature(1)", "T+", id="temperature_up"),
        Binding("T", "temperature(-1)", "T-", id="temperature_down"),
        Binding("b", "block_tokens(2)", "block+", id="block_tokens_up"),
        Binding("B", "block_tokens(0.5)", "block-", id="block_tokens_down"),
        Binding("m", "toggle_mode", "mode", id="toggle_mode"),
        Binding("r", "rerun", "rerun", id="rerun"),
        Binding("p", "edit_prompt", "prompt", id="edit_prompt"),
        Binding("c", "backend_settings", "backend", id="backend_settings"),
        Binding("s", "save", "save", id="save_run"),
        Binding("q", "quit", "quit", id="quit", priority=True),
    ]

    def __init__(
        self,
        search: SearchSettings,
        backend: BackendSettings,
        *,
        host_factory: Callable[[Callable], EngineHost] = EngineHost,
        clock: Callable[[], float] = time.monotonic,
        save_dir: Path = Path("."),
    ):
        super().__init__()
        self.search = search
        self.backend = backend
        self.clock = clock
        self.save_dir = save_dir
        self.host = host_factory(self.post_message)
        self.state = RunState("-", search, backend, clock=clock, status="idle")
        self.comparisons: dict[tuple, ModeTimes] = {}
        self._runs = 0
        self._restart_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield SettingsBar(id="settings-bar")
        with Grid(id="dashboard"):
            yield BeamsPanel(id="beams")
            yield ProgressPanel(id="progress")
            yield ThroughputPanel(id="throughput")
            yield AnswerPanel(id="answer")
            yield TimingsPanel(id="timings")
            yield LogPanel(self.clock, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.install_screen(PromptScreen(), "prompt")
        self._panels = [self.query_one(kind) for kind in (BeamsPanel, ProgressPanel, ThroughputPanel, AnswerPanel,
                                                          LogPanel)]
        self._timings = self.query_one(TimingsPanel)
        self.run_worker(self.host.serve, thread=True, group="engine", name="engine loop", exclusive=True)
        self._show_settings()
        self.start_search()
        self.call_after_refresh(self.set_interval, 1 / REFRESH_HZ, self.refresh_panels)

    def on_resize(self) -> None:
        self.screen.set_class(self.size.width < NARROW_WIDTH, "narrow")

    # Runs ----------------------------------------------------------------------------------------------------

    def start_search(self) -> None:
        """Cancel whatever runs and start a search with the current settings."""
        if self._restart_timer is not None:
            self._restart_timer.stop()
            self._restart_timer = None
        self.state.cancel()
        log = self.state.log
        self._runs += 1
        self.state = RunState(f"run-{self._runs}", self.search, self.backend, clock=self.clock)
        self.state.log[:0] = log  # lines of the abandoned run not shown yet
        self.state.say(f"starting: {describe(self.search, self.backend)}")
        self.host.submit(SearchOrder(self.state.run_id, self.search, self.backend))

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

    def _record_timing(self, settings: SearchSettings, wall_s: float) -> None:
        key = (settings.replace(mode="parallel", seed=None), self.backend)
        label = (f"w{settings.beam_width} n{settings.n_per_beam} b{settings.block_tokens}/{settings.max_tokens}")
        times = self.comparisons.pop(key, None) or ModeTimes(label)
        setattr(times, settings.mode, wall_s)
        self.comparisons[key] = times  # most recent last
        while len(self.comparisons) > MAX_COMPARISONS:
            self.comparisons.pop(next(iter(self.comparisons)))

    def refresh_panels(self) -> None:
        """Redraw every panel from the current run's state: ten times a second, whatever the event rate."""
        state = self.state
        for panel in self._panels:
            panel.show(state)
        self._timings.show(state, list(self.comparisons.values()))

    def _show_settings(self) -> None:
        self.query_one(SettingsBar).show_settings(self.search, self.backend)

    def _change(self, **changes) -> None:
        try:
            self.search = self.search.replace(**changes)
        except ConfigError as exc:
            self.notify(str(exc), severity="warning")
            return
        self._show_settings()
        self.restart_soon()

    # Knobs ---------------------------------------------------------------------------------------------------

    def action_beam_width(self, delta: int) -> None:
        self._change(beam_width=max(1, self.search.beam_width + delta))

    def action_n_per_beam(self, delta: int) -> None:
        self._change(n_per_beam=max(1, self.search.n_per_beam + delta))

    def action_temperature(self, direction: int) -> None:
        current = self.search.proposal_temperature
        self._change(temperature=round(max(0.0, current + direction * TEMPERATURE_STEP), 4))

    def action_block_tokens(self, factor: float) -> None:
        block = int(min(self.search.max_tokens, max(1, round(self.search.block_tokens * factor))))
        self._change(block_tokens=block)

    def action_toggle_mode(self) -> None:
        self._change(mode="sequential" if self.search.mode == "parallel" else "parallel")

    def action_rerun(self) -> None:
        self.start_search()

    def action_edit_prompt(self) -> None:
        def apply(prompt: str | None) -> None:
            if prompt is not None:
                self.search = self.search.replace(prompt=prompt)
                self._show_settings()
                self.start_search()

        screen = self.get_screen("prompt")
        self.push_screen(screen, apply)
        screen.edit(self.search.prompt)

    def action_backend_settings(self) -> None:
        def apply(settings: BackendSettings | None) -> None:
            if settings is not None:
                self.backend = settings
                self._show_settings()
                self.start_search()

        self.push_screen(SettingsScreen(self.backend), apply)

    def action_save(self) -> None:
        path = self.save_dir / f"beamtui-{time.strftime('%Y%m%d-%H%M%S')}-{self.state.run_id}.json"
        try:
            path.write_text(json.dumps(self.run_summary(), indent=2, ensure_ascii=False))
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror}", severity="error")
            return
        self.state.say(f"saved {path}")
        self.notify(f"saved {path}")

    def run_summary(self) -> dict:
        state = self.state
        result = state.result
        return {
            "run_id": state.run_id,
            "status": state.status,
            "settings": {"search": vars(state.search), "backend": vars(state.backend)},
            "seed": state.seed,
            "events": {"requests": state.requests_done, "retries": state.retries, "failures": state.failures,
                       "tokens": state.tokens, "blocks": len(state.blocks)},
            "result": result.to_json() if result else None,
            "error": state.error,
            "block_timings": [vars(row) for row in state.blocks],
            "comparisons": [vars(times) for times in self.comparisons.values()],
        }

    async def action_quit(self) -> None:
        self.host.shutdown()
        self.exit()

    def on_unmount(self) -> None:
        self.host.shutdown()  # however the app ends, the engine's thread must end with it

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if binding.id != "quit":
                key = self.get_key_display(binding)
                yield SystemCommand(
                    f"{binding.description} ({key})", f"the {key} key",
                    lambda action=binding.action: self.run_action(action),
                )


def launch(args) -> int:
    """Validate the flags (and config file), check the backend, then open the dashboard."""
    from tui.options import fail, read_config, settings_from

    try:
        values = read_config(args.config) if args.config else {}
        values |= {k: v for k, v in vars(args).items() if v is not None}
        search, backend = settings_from(values)
        if backend.backend != "local":
            asyncio.run(_probe(backend))  # a missing key or dead endpoint fails here, before the screen opens
    except ConfigError as exc:
        fail(str(exc), 2)
    # The engine thread runs Python too; a shorter GIL switch interval keeps key presses from queueing behind it.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    BeamtuiApp(search, backend).run()
    return 0


async def _probe(backend: BackendSettings) -> None:
    sampler = await open_sampler(backend)
    await sampler.aclose()
