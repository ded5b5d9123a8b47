"""Eval's charts of accuracy against tokens spent: in the terminal through plotext, and to a PNG or SVG file
through matplotlib for a paper or a README. Both draw what `EvalPlan.curves` gives and compute nothing."""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import ConfigError
from engine.eval.budgets import Curve

PLOT_FORMATS = (".png", ".svg")


def check_plot_path(path: str) -> Path:
    """--plot's file, checked before any work: a format we write, a folder that exists, matplotlib installed."""
    target = Path(path)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise ConfigError(f"--plot writes {' or '.join(PLOT_FORMATS)} files, got {path!r}")
    if not target.parent.is_dir():
        raise ConfigError(f"--plot: folder {str(target.parent)!r} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'beamtui[plot]'") from None
    return target


def terminal_chart(curves: list[Curve]) -> str:
    """Accuracy against mean tokens per search: a line per family with a point per budget, or a numbered point
    per strategy when there are no budgets."""
    import plotext as plt

    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(72, 14)
    points = [point for curve in curves for point in curve.points]
    if not points:
        return "no results to chart yet"
    lines = any(len(curve.points) > 1 for curve in curves)
    for number, curve in enumerate(curves, 1):  # numbers, not names: strategies of like cost sit side by side
        xs, ys = [p.tokens for p in curve.points], [100 * p.accuracy for p in curve.points]
        if lines and len(xs) > 1:
            plt.plot(xs, ys, marker="dot", color="white")
        for x, y in zip(xs, ys, strict=True):
            plt.text(str(number), x, y, alignment="center")
    plt.xlim(0, max(p.tokens for p in points) * 1.15 or 1)
    plt.ylim(0, 100)
    plt.xlabel("tokens per search")
    plt.ylabel("accuracy %")
    plt.title("accuracy against tokens per search" + (", a line per strategy over its budgets" if lines else ""))
    legend = "  ".join(f"{number} {curve.family}" for number, curve in enumerate(curves, 1))
    return re.sub(r"\x1b\[[0-9;]*m", "", plt.build()) + legend  # plain text, whatever the terminal


def write_plot(curves: list[Curve], path: Path, title: str) -> None:
    """The same chart with each point's 95% Wilson interval, budgets marked, to a PNG or SVG file."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no window: a file
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=150)
    try:
        for curve in curves:
            xs = [p.tokens for p in curve.points]
            ys = [100 * p.accuracy for p in curve.points]
            below = [100 * (p.accuracy - p.ci_low) for p in curve.points]
            above = [100 * (p.ci_high - p.accuracy) for p in curve.points]
            axes.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=curve.family)
            for point, x, y in zip(curve.points, xs, ys, strict=True):
                if point.budget is not None:
                    axes.annotate(f"×{point.budget}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if any(p.tokens > 0 for c in curves for p in c.points):
            axes.set_xscale("log")
        axes.set_xlabel("mean tokens per search (log scale)")
        axes.set_ylabel("accuracy % (95% Wilson interval)")
        axes.set_ylim(0, 105)
        axes.set_title(title, fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, metadata={"Software": None} if path.suffix.lower() == ".png" else {"Date": None})
    finally:
        plt.close(figure)
