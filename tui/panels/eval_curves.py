"""Accuracy against tokens spent as the eval fills in: a line per strategy over its budgets (a point per strategy
without --budgets), each point's 95% interval drawn as a bar. The curves come from `EvalPlan.curves`' fold."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plotext import PlotextPlot

from engine.eval.budgets import Curve

COLORS = ("cyan", "orange", "green", "magenta", "red", "blue", "yellow", "white")  # fixed: plotext's vary by run


class EvalCurvesPanel(Vertical):
    BORDER_TITLE = "Accuracy against tokens"
    BORDER_SUBTITLE = "a line per strategy over its budgets · bars: 95% Wilson interval"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.plot = PlotextPlot(id="eval-curves-plot")
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield self.plot

    def show(self, curves: list[Curve]) -> None:
        shown = tuple(curves)
        if shown == self._shown:
            return
        self._shown = shown
        plt = self.plot.plt
        plt.clear_data()
        plt.clear_figure()
        for number, curve in enumerate(c for c in curves if c.points):
            color = COLORS[number % len(COLORS)]
            xs = [p.tokens for p in curve.points]
            plt.plot(xs, [100 * p.accuracy for p in curve.points], marker="dot", color=color, label=curve.family)
            for point in curve.points:
                plt.plot([point.tokens] * 2, [100 * point.ci_low, 100 * point.ci_high], color=color, marker="│")
        plt.ylim(0, 100)
        plt.xlabel("mean tokens per search")
        plt.ylabel("accuracy %")
        self.plot.refresh()
