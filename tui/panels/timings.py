"""Sequential against parallel: per block, what one request at a time would have cost against the wall time;
and measured runs of the same settings in both modes, side by side."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from tui.panels.line import Line
from tui.state import RunState

PLOT_EVERY_S = 2.0  # plotext costs ~35 ms a draw; blocks can finish faster than anyone reads a chart
PLOT_BLOCKS = 12


@dataclass
class ModeTimes:
    """Wall seconds of the latest finished run in each mode, for one set of settings."""

    label: str
    sequential: float | None = None
    parallel: float | None = None


class TimingsPanel(Vertical):
    BORDER_TITLE = "Timings"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._blocks_shown = -1
        self._plotted_at = float("-inf")
        self._comparisons_shown: list[tuple] | None = None
        self.speedup = Line(id="speedup")
        self.blocks = DataTable(cursor_type="none", id="blocks-table")
        self.runs = DataTable(cursor_type="none", id="runs-table")
        self.plot = PlotextPlot(id="timings-plot")

    def compose(self) -> ComposeResult:
        yield self.speedup
        with Horizontal():
            with Vertical(id="timings-tables"):
                yield self.blocks
                yield self.runs
            yield self.plot

    def on_mount(self) -> None:
        for label, width in (("block", 5), ("Σ latency s", 11), ("wall s", 7), ("speedup", 7)):
            self.blocks.add_column(label, width=width)
        for label, width in (("same settings", 16), ("seq s", 7), ("par s", 7), ("speedup", 7)):
            self.runs.add_column(label, width=width)

    def show(self, state: RunState, comparisons: list[ModeTimes]) -> None:
        if len(state.blocks) != self._blocks_shown:
            self._blocks_shown = len(state.blocks)
            self._show_blocks(state)
        rows = [(c.label, c.sequential, c.parallel) for c in comparisons]
        if rows != self._comparisons_shown:
            self._comparisons_shown = rows
            table = self.runs
            table.clear()
            for label, seq, par in rows:
                speedup = f"x{seq / par:.2f}" if seq and par else "–"
                table.add_row(label, _seconds(seq), _seconds(par), speedup)

    def _show_blocks(self, state: RunState) -> None:
        table = self.blocks
        if len(state.blocks) < table.row_count:  # a new run: start over
            table.clear()
        for row in state.blocks[table.row_count:]:
            table.add_row(str(row.block), f"{row.sum_request_s:.2f}", f"{row.wall_s:.2f}", f"x{row.speedup:.2f}")
        if state.blocks:
            table.scroll_end(animate=False)
        wall = sum(row.wall_s for row in state.blocks)
        serial = sum(row.sum_request_s for row in state.blocks)
        best_wall = sum(row.best_wall_s(state.cap) for row in state.blocks)
        speedup = serial / wall if wall else 0.0
        ideal = serial / best_wall if best_wall else 1.0
        self.speedup.text = (
            f"speedup x{speedup:.2f} of ideal x{ideal:.2f} (requests per block, capped at {state.cap})"
            if state.blocks else "speedup – (no block finished yet)"
        )
        now = state.clock()
        if now - self._plotted_at >= PLOT_EVERY_S or not state.blocks or state.finished:
            self._plotted_at = now
            self._plot(state.blocks[-PLOT_BLOCKS:])

    def _plot(self, blocks: list) -> None:
        plt = self.plot.plt
        plt.clear_data()
        plt.clear_figure()
        if blocks:
            labels = [str(row.block) for row in blocks]
            plt.multiple_bar(labels, [[r.sum_request_s for r in blocks], [r.wall_s for r in blocks]],
                             labels=["Σ latency", "wall"])
        plt.title("seconds per block: Σ request latency vs wall")
        self.plot.refresh()


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
