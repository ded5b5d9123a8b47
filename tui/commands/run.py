"""`beamtui run`: one search, live progress on stderr, then the best answer and the final beams."""

from __future__ import annotations

import json
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from engine.backends import open_sampler
from engine.events import (
    BlockFinished,
    BlockStarted,
    Event,
    RequestFinished,
    RequestRetried,
    RequestStarted,
    SearchStarted,
    discard,
)
from engine.search import SearchResult, run_search
from tui.options import settings_from

TEXT_PREVIEW_CHARS = 70


class LiveProgress:
    """Turns the engine's events into a progress bar and a status line."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("block"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("search", total=1, status="starting")
        self.best = Text("")
        self.live = Live(Group(self.progress, self.best), console=console, refresh_per_second=8, transient=True)
        self.in_flight = self.cap = self.tokens = self.retries = self.failures = 0
        self.started = time.perf_counter()

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def on_event(self, event: Event) -> None:
        if isinstance(event, SearchStarted):
            self.cap = event.max_concurrent
            self.progress.update(self.task, total=event.settings.max_blocks)
        elif isinstance(event, BlockStarted):
            self.progress.update(self.task, completed=event.block - 1)
        elif isinstance(event, RequestStarted):
            self.in_flight = event.in_flight
        elif isinstance(event, RequestRetried):
            self.retries += 1
        elif isinstance(event, RequestFinished):
            self.in_flight = event.in_flight
            self.tokens += event.completion_tokens
            self.failures += event.error is not None
        elif isinstance(event, BlockFinished):
            self.progress.update(self.task, completed=event.block)
            self.best.plain = f"best {event.best_score:.3f}: {_preview(event.best_text)}"
        else:
            return
        rate = self.tokens / max(time.perf_counter() - self.started, 1e-9)
        status = (
            f"{self.tokens} tokens · {rate:.0f} tok/s · {self.in_flight}/{self.cap} in flight"
            f" · retries {self.retries} · failures {self.failures}"
        )
        self.progress.update(self.task, status=status)


def _preview(text: str, limit: int = TEXT_PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "…" + flat[-(limit - 1):]


def beams_table(result: SearchResult) -> Table:
    table = Table(title="final beams", title_justify="left", expand=True)
    for name, width in (("#", 2), ("score", 8), ("mean logp", 9), ("tokens", 6)):
        table.add_column(name, justify="right", no_wrap=True, min_width=width)
    table.add_column("done", justify="center", no_wrap=True, min_width=4)
    table.add_column("text (tail)", no_wrap=True, overflow="ellipsis", ratio=1)
    for rank, beam in enumerate(result.beams, 1):
        table.add_row(
            str(rank), f"{beam.score:.4f}", f"{beam.mean_logprob:.4f}", str(beam.length),
            "✓" if beam.finished else "", _preview(beam.text),
        )
    return table


def summary_line(result: SearchResult) -> str:
    usage = result.usage
    tokens = usage["completion_tokens"]
    gain = result.sum_request_s / result.wall_s if result.wall_s else 0.0
    return (
        f"seed {result.seed} · {result.settings.mode} · wall {result.wall_s:.2f}s · "
        f"requests {result.requests} (retries {usage['retries']}, failures {usage['failures']}) · "
        f"sum of request latencies {result.sum_request_s:.2f}s (x{gain:.1f} vs one at a time) · "
        f"{tokens} tokens, {tokens / max(result.wall_s, 1e-9):.0f} tok/s"
    )


async def run_command(args) -> int:
    search, backend = settings_from(vars(args))
    out = Console()
    err = Console(stderr=True)
    sampler = await open_sampler(backend)
    try:
        if args.json:
            result = await run_search(search, sampler, backend, discard)
        else:
            with LiveProgress(err) as live:
                result = await run_search(search, sampler, backend, live.on_event)
    finally:
        await sampler.aclose()
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        best = result.best
        if best is not None:
            title = f"best answer · score {best.score:.4f} · {best.length} tokens"
            out.print(Panel(best.text.strip() or "(empty)", title=title, title_align="left"))
            out.print(beams_table(result))
        out.print(summary_line(result), style="dim", soft_wrap=True)
    if result.error:
        err.print(f"beamtui: error: {result.error}" + (" (best beam so far shown above)" if result.best else ""),
                  soft_wrap=True, markup=False, highlight=False)
        return 1
    return 0
