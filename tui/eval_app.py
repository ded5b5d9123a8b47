"""`beamtui eval --tui`: the summary table filling in live, and one search of the eval in the usual panels.

Many searches run at once; the panels follow one of them from its start to its end, then the next to start.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.widgets import Header

from engine.eval.budgets import Curve
from engine.eval.plan import EvalPlan
from engine.eval.summary import EvalTally, StrategySummary
from engine.events import SearchStarted
from engine.run_state import RunState
from tui.app import NARROW_WIDTH
from tui.engine_host import EngineBatch, EngineFailed
from tui.eval_host import EvalHost, EvalResults
from tui.keymap import check_keymap
from tui.panels.answer import AnswerPanel
from tui.panels.eval_curves import EvalCurvesPanel
from tui.panels.eval_table import EvalTablePanel
from tui.panels.keys_bar import KeysBar
from tui.panels.line import Line
from tui.panels.log import LogPanel
from tui.panels.population import PopulationPanel
from tui.panels.progress import ProgressPanel
from tui.panels.tree import TreePanel

REFRESH_HZ = 10


class EvalApp(App):
    CSS_PATH = "beamtui.tcss"
    TITLE = "beamtui eval"
    BINDINGS = [Binding("q", "quit", "quit", id="quit", priority=True)]

    def __init__(self, plan: EvalPlan, *, host_factory: Callable[..., EvalHost] = EvalHost,
                 clock: Callable[[], float] = time.monotonic, keymap: dict[str, str] | None = None):
        super().__init__()
        self.keys = check_keymap(keymap or {}, [self.BINDINGS])
        self.plan, self.settings, self.backend, self.clock = plan, plan.settings, plan.backend, clock
        self.host = host_factory(self.post_message, plan)
        self.specs = [s.spec for s in self.settings.strategies]
        self.total = len(plan.problem_set) * len(self.specs) * self.settings.samples
        self.tally = EvalTally(self.specs, self.settings.samples)  # the output's results, then this run's
        for record in plan.records():
            self.tally.add(record)
        self.rows: list[StrategySummary] = self.tally.rows()
        self.curves: list[Curve] = plan.curves_of(self.rows)
        self.status = "running"
        self.state: RunState | None = None  # the search the panels follow

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line(id="settings-bar")
        with Grid(id="eval-dashboard"):
            yield EvalTablePanel(id="eval-table")
            yield ProgressPanel(id="progress")
            yield EvalCurvesPanel(id="eval-curves")
            yield PopulationPanel(id="population")
            yield TreePanel(id="tree")
            yield AnswerPanel(id="answer")
            yield LogPanel(self.clock, id="log")
        yield KeysBar(id="keys-bar")

    def on_mount(self) -> None:
        self.set_keymap(self.keys)
        self.query_one("#settings-bar", Line).text = self.plan.headline
        self._table = self.query_one(EvalTablePanel)
        self._curves = self.query_one(EvalCurvesPanel)
        self._panels = [self.query_one(kind) for kind in (PopulationPanel, TreePanel, ProgressPanel, AnswerPanel,
                                                          LogPanel)]
        self.run_worker(self.host.serve, thread=True, group="engine", name="eval loop", exclusive=True)
        self.set_interval(1 / REFRESH_HZ, self.refresh_panels)

    def on_resize(self) -> None:
        self.screen.set_class(self.size.width < NARROW_WIDTH, "narrow")

    def on_engine_batch(self, message: EngineBatch) -> None:
        for event in message.events:
            if isinstance(event, SearchStarted) and (self.state is None or self.state.finished):
                self.state = RunState(event.run_id, event.settings, self.backend, clock=self.clock)
            if self.state is not None and event.run_id == self.state.run_id:
                self.state.apply(event)

    def on_eval_results(self, message: EvalResults) -> None:
        for record in message.records:
            self.tally.add(record)
        if message.finished:
            self.status = "finished: q prints the summary"
        self.rows = self.tally.rows()
        self.curves = self.plan.curves_of(self.rows)

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.status = f"failed: {message.error}"
        self.notify(message.error, title="eval failed", severity="error", timeout=10)

    def refresh_panels(self) -> None:
        self._table.show(self.rows, self.tally.searches, self.total, self.status,
                        narrow=self.screen.has_class("narrow"))
        self._curves.show(self.curves)
        if self.state is not None:
            for panel in self._panels:
                panel.show(self.state)

    def action_quit(self) -> None:
        self.host.shutdown()
        self.exit()

    def on_unmount(self) -> None:
        self.host.shutdown()
