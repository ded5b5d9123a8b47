"""Sequential against parallel, honestly: the headline is a measured comparison of the same settings and seed
in both modes; per round, the latency overlap (how many requests were in flight together) is labelled as that,
because on a compute-bound backend overlapping requests slow each other and the overlap is no speedup."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from engine.run_state import RunState
from tui.mode_times import ModeTimes
from tui.panels.line import Line

PLOT_EVERY_ROUNDS = 3  # plotext costs ~35 ms a draw; rounds can finish faster than anyone reads a chart
PLOT_ROUNDS = 12


def headline(comparison: ModeTimes | None) -> str:
    if comparison is None or comparison.speedup is None:
        missing = "sequential" if comparison is None or comparison.sequential is None else "parallel"
        return f"measured speedup: – ({missing} not run yet; m runs it, same seed)"
    return (f"measured speedup x{comparison.speedup:.2f}: seq {comparison.sequential:.2f}s, "
            f"par {comparison.parallel:.2f}s")


class TimingsPanel(Vertical):
    BORDER_TITLE = "Timings"
    BORDER_SUBTITLE = "overlap = Σ latency / wall: requests in flight at once, not a speedup"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._rounds_shown = -1
        self._plotted_rounds = -1
        self._comparisons_shown: list[tuple] | None = None
        self.speedup = Line(id="speedup")
        self.rounds = DataTable(cursor_type="none", id="rounds-table")
        self.runs = DataTable(cursor_type="none", id="runs-table")
        self.plot = PlotextPlot(id="timings-plot")

    def compose(self) -> ComposeResult:
        yield self.speedup
        with Horizontal():
            with Vertical(id="timings-tables"):
                yield self.rounds
                yield self.runs
            yield self.plot

    def on_mount(self) -> None:
        for label, width in (("round", 5), ("block", 5), ("Σ latency s", 11), ("wall s", 7), ("overlap", 7)):
            self.rounds.add_column(label, width=width)
        # The prompt's number and the seed whole: two prompts, or two seeds, are two rows told apart.
        for label, width in (("measured: prompt, spec", 22), ("seed", 10), ("seq s", 6), ("par s", 6), ("×", 6)):
            self.runs.add_column(label, width=width)

    def show(self, state: RunState, comparisons: list[ModeTimes], current: ModeTimes | None) -> None:
        self.speedup.text = headline(current)
        if len(state.rounds) != self._rounds_shown:
            self._rounds_shown = len(state.rounds)
            self._show_rounds(state)
        rounds = len(state.rounds)
        if rounds != self._plotted_rounds and (rounds < self._plotted_rounds or self._plotted_rounds <= 0
                                               or rounds - self._plotted_rounds >= PLOT_EVERY_ROUNDS
                                               or state.finished):
            self._plotted_rounds = rounds
            self._plot(state.rounds[-PLOT_ROUNDS:])
        rows = [(c.label, c.prompt, c.seed, c.sequential, c.parallel, c.speedup) for c in comparisons]
        if rows != self._comparisons_shown:
            self._comparisons_shown = rows
            table = self.runs
            table.clear()
            for label, prompt, seed, seq, par, speedup in rows:
                table.add_row(f"#{prompt} {label}", "–" if seed is None else str(seed), _seconds(seq), _seconds(par),
                              "–" if speedup is None else f"x{speedup:.2f}")

    def _show_rounds(self, state: RunState) -> None:
        table = self.rounds
        if len(state.rounds) < table.row_count:  # a new run: start over
            table.clear()
        for row in state.rounds[table.row_count:]:
            table.add_row(str(row.round), str(row.block), f"{row.sum_request_s:.2f}", f"{row.wall_s:.2f}",
                          f"x{row.overlap:.2f}")
        if state.rounds:
            table.scroll_end(animate=False)

    def _plot(self, rounds: list) -> None:
        plt = self.plot.plt
        plt.clear_data()
        plt.clear_figure()
        if rounds:
            numbers = [row.round for row in rounds]
            plt.multiple_bar(numbers, [[r.sum_request_s for r in rounds], [r.wall_s for r in rounds]],
                             labels=["Σ latency", "wall"], color=["orange", "cyan"])
            # No x labels, the rounds' range in the title instead: plotext's ticks vary with the hash seed, and the
            # labels it drops where they would touch varied with the sizes the plot was drawn at before.
            plt.xticks([], [])
        shown = f", rounds {rounds[0].round}-{rounds[-1].round}" if rounds else ""
        plt.title(f"seconds per round{shown}: Σ request latency (overlapping) vs wall")
        self.plot.refresh()


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
