"""`beamtui eval`: strategies side by side on a problem file, with accuracy, cost and confidence."""

from __future__ import annotations

import argparse
import json

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.backends.factory import check_backend
from engine.errors import ConfigError
from engine.eval.evaluator import (
    DEFAULT_STRATEGIES,
)
from engine.eval.grading import GRADERS
from engine.eval.plan import EvalPlan, plan_eval
from engine.eval.summary import StrategySummary
from engine.registry import spec_grammar
from tui.charts import check_plot_path, terminal_chart, write_plot
from tui.commands import open_backend, stdout_console
from tui.options import add_command, add_flags, merged_values
from tui.summary_cells import ACCURACY, COST, pass_ks, summary_cells, summary_notes

# Short answers by default: the shipped problems need a few tokens, and the default eval must fit in minutes.


def add_eval_parser(commands) -> None:
    evaluate = add_command(
        commands, "eval", "compare strategies on a problem file: accuracy, cost, confidence",
        "Every strategy answers every problem; results are appended to --out as they come, and a rerun resumes "
        f"it. A strategy is a spec: {spec_grammar()} (mcmc and smc answer with a draw from p^alpha unless :best "
        "asks for the likeliest of their final population).",
        ["beamtui eval --problems assets/arithmetic.jsonl --limit 20 --out /tmp/eval.jsonl",
         "beamtui eval --problems assets/arithmetic.jsonl --strategies greedy,smc:8,smc:8:best,mcmc:2x5 "
         "--samples 4 --out /tmp/eval.jsonl --json"])
    evaluate.add_argument("--problems", required=True,
                          help=".jsonl: {question|problem|prompt, answer}, GSM8K, MATH or multiple choice")
    evaluate.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                          help=f"comma-separated specs, the first is the baseline (default {DEFAULT_STRATEGIES})")
    evaluate.add_argument("--grader", default="auto", help=f"{' | '.join(GRADERS)} (default auto: by file shape)")
    evaluate.add_argument("--prompt-template", help="the prompt, with {question} (and {choices}); "
                                                    "default: one asking for the answer in the grader's form")
    evaluate.add_argument("--limit", type=int, help="only the first N problems")
    evaluate.add_argument("--samples", type=int, default=1, help="searches per problem and strategy (default 1)")
    evaluate.add_argument("--out", default="eval_results.jsonl",
                          help="results, one line per search; a rerun resumes it (default eval_results.jsonl)")
    evaluate.add_argument("--budgets", help="comma-separated budgets, e.g. 1,2,4,8: each strategy run at each, its "
                                            "sizes multiplied (beam width, MH steps, particles, N, votes, sps "
                                            "rollouts); greedy and sample once")
    evaluate.add_argument("--plot", help="write accuracy against tokens, a line per strategy with its 95%% interval, "
                                         "to this .png or .svg (needs matplotlib: beamtui[plot])")
    evaluate.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars, just the summary")
    evaluate.add_argument("--tui", action="store_true",
                          help="the dashboard: the table filling in live, one search at a time in the panels")
    add_flags(evaluate, "eval")


def plan_from(args: argparse.Namespace) -> EvalPlan:
    if args.tui and args.quiet:
        raise ConfigError("--quiet turns off the progress bars; --tui shows the dashboard instead: give one")
    if args.plot is not None:
        check_plot_path(args.plot)
    return plan_eval(merged_values(args), problems=args.problems, out=args.out, strategies=args.strategies,
                     grader=args.grader, template=args.prompt_template, limit=args.limit, samples=args.samples,
                     budgets=args.budgets)


async def eval_command(args: argparse.Namespace) -> int:
    plan = plan_from(args)
    err = Console(stderr=True)
    err.print(plan.headline, soft_wrap=True)
    sampler = await open_backend(plan.backend)
    try:
        wall = await run_with_progress(plan, sampler, err, quiet=args.quiet)
    finally:
        await sampler.aclose()
    report(args, plan, wall)
    return 0


def eval_tui_command(args: argparse.Namespace) -> int:
    """The eval with its dashboard; the summary is printed when the dashboard closes."""
    import asyncio

    from tui.eval_app import EvalApp

    plan = plan_from(args)
    if plan.backend.backend != "local":
        asyncio.run(check_backend(plan.backend))  # a missing key or dead endpoint fails before the screen opens
    app = EvalApp(plan, keymap=merged_values(args).get("keymap"))
    app.run()
    report(args, plan, app.host.wall_s)
    return 0


def report(args: argparse.Namespace, plan: EvalPlan, wall: float | None) -> None:
    """The summary of every result in the output for these problems: this run's and earlier runs'."""
    settings, backend = plan.settings, plan.backend
    rows = plan.summary()
    count = len(plan.problem_set)
    chart = plan.curves()
    if args.plot is not None:
        write_plot(chart, check_plot_path(args.plot),
                   f"{plan.problem_set.describe()} · grader {settings.grader.name} · {backend.backend}")
    if args.json:
        print(json.dumps({"problems": count, "shape": plan.problem_set.shape, "grader": settings.grader.name,
                          "template": settings.template, "wall_s": None if wall is None else round(wall, 3),
                          "max_concurrent": backend.max_concurrent, "backend": backend.backend,
                          "out": str(settings.out), "strategies": [row.as_dict() for row in rows]}
                         | ({"budget_curves": [curve_json(curve) for curve in chart]} if plan.budgeted else {})))
        return
    this_run = "stopped early" if wall is None else f"this run {wall:.1f}s"
    console = stdout_console()
    title = (f"{count} problems · grader {settings.grader.name} · {backend.backend} · tokens: per search · none: no "
             f"answer read · {this_run}")
    for table in summary_tables(rows, title, console.width):
        console.print(table)
    console.print(f"prompt template: {settings.template!r}", soft_wrap=True)
    print(terminal_chart(chart))
    if args.plot is not None:
        console.print(f"chart written to {args.plot}")


async def run_with_progress(plan: EvalPlan, sampler, console: Console, *, quiet: bool) -> float:
    if quiet:
        return await plan.run(sampler)
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[accuracy]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, refresh_per_second=8) as bars:
        tasks = {}

        def show(spec: str, record: dict, progress) -> None:
            if spec not in tasks:
                tasks[spec] = bars.add_task(spec, total=progress.total, accuracy="")
            bars.update(tasks[spec], completed=progress.done + progress.skipped,
                        accuracy=f"{progress.correct}/{progress.done} right this run")

        done = plan.done_counts()  # a resumed eval's bars start where the output stands
        for strategy in plan.settings.strategies:
            total = len(plan.problem_set) * plan.settings.samples
            tasks[strategy.spec] = bars.add_task(strategy.spec, total=total, completed=done[strategy.spec],
                                                 accuracy="already done" if done[strategy.spec] else "")
        return await plan.run(sampler, on_result=show)


WIDE_SUMMARY = 120  # narrower terminals get the summary as three tables (accuracy, cost, pass@k), none cut


def summary_tables(rows: list[StrategySummary], title: str, width: int) -> list[Table]:
    """The summary as one table, or on a narrow terminal as one table per question, each fitting whole."""
    cells, notes = summary_cells(rows), summary_notes(rows[0].strategy)
    groups = [ACCURACY, COST, [f"pass@{k}" for k in pass_ks(rows)]]
    if width >= WIDE_SUMMARY:
        groups = [list(cells)]
    tables = []
    for number, group in enumerate(g for g in groups if g):
        caption = "; ".join(note for name, note in notes.items() if name in group)
        table = Table(title=title if number == 0 else None, title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False, caption=caption, caption_justify="left")
        table.add_column("strategy", no_wrap=True)
        for name in group:
            table.add_column(name, justify="right", no_wrap=True)
        for row in rows:
            table.add_row(row.strategy, *(cells[name](row) for name in group))
        tables.append(table)
    return tables


def curve_json(curve) -> dict:
    return {"strategy": curve.family,
            "points": [{"budget": p.budget, "mean_tokens": round(p.tokens, 3), "accuracy": round(p.accuracy, 6),
                        "ci_low": round(p.ci_low, 6), "ci_high": round(p.ci_high, 6),
                        "mean_requests": round(p.requests, 3),
                        "seconds_per_search": None if p.seconds is None else round(p.seconds, 4),
                        "pass_at": {f"pass@{k}": round(v, 6) for k, v in p.pass_at.items()}}
                       for p in curve.points]}
