"""`beamtui run`: one search, live progress on stderr, then the answer and the final candidates."""

from __future__ import annotations

import json
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.errors import ConfigError
from engine.events import Event
from engine.results import SearchResult
from engine.run_state import RunState
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings, settings_from
from tui.commands import check_dashboard_keymap, open_backend, stdout_console
from tui.options import merged_values, refuse_other_strategies

TEXT_PREVIEW_CHARS = 70
REFRESH_S = 0.125


class LiveProgress:
    """A progress bar and a status line, drawn from the run's folded state."""

    def __init__(self, console: Console, search: SearchSettings, backend: BackendSettings):
        self.state = RunState("", search, backend)
        # The elapsed time ticks and requests are counted as they finish, so a long block still shows it is moving.
        self.progress = Progress(SpinnerColumn(), TextColumn("block"), MofNCompleteColumn(), BarColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=console,
                                 transient=True)
        self.task = self.progress.add_task("search", total=search.max_blocks, status="starting")
        self.best = Text("")
        self.live = Live(Group(self.progress, self.best), console=console, refresh_per_second=8, transient=True)
        self._drawn = 0.0

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def on_event(self, event: Event) -> None:
        state = self.state
        state.apply(event)
        state.log.clear()
        now = time.monotonic()
        if now - self._drawn < REFRESH_S and not state.finished:
            return
        self._drawn = now
        tokens_s, _ = state.rates()
        self.progress.update(self.task, total=state.max_blocks, completed=state.blocks_done, status=(
            f"{state.stage or 'starting'} · {state.tokens} tokens · {tokens_s:.0f} tok/s · {state.requests_done} "
            f"requests done, {state.in_flight}/{state.cap} in flight · retries {state.retries} · failures "
            f"{state.failures}"))
        if state.best_score is not None:
            self.best.plain = f"best {state.best_score:.3f}: {_preview(state.best_text)}"


def _preview(text: str, limit: int = TEXT_PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "…" + flat[-(limit - 1):]


def candidates_table(result: SearchResult) -> Table:
    table = Table(title=f"final candidates · {result.settings.strategy}", title_justify="left", expand=True)
    for name, width in (("#", 2), ("target", 9), ("score", 9), ("mean logp", 9), ("tokens", 6)):
        table.add_column(name, justify="right", no_wrap=True, min_width=width)
    table.add_column("done", justify="center", no_wrap=True, min_width=4)
    table.add_column("text (tail)", no_wrap=True, overflow="ellipsis", ratio=1)
    alpha = result.settings.alpha
    for rank, candidate in enumerate(result.candidates, 1):
        table.add_row(
            str(rank), f"{candidate.target(alpha):.3f}", f"{candidate.score:.4f}",
            f"{candidate.mean_logprob:.4f}", str(candidate.length), "✓" if candidate.finished else "",
            _preview(candidate.text),
        )
    return table


def strategy_line(result: SearchResult) -> str:
    stats = result.stats
    parts = []
    if "acceptance_rate" in stats:
        rate = stats["acceptance_rate"]
        parts.append(f"acceptance {'–' if rate is None else f'{rate:.0%}'} ({stats['accepted']} of "
                     f"{stats['proposals']} proposals)")
    if "resamples" in stats:
        low = stats["final_ess"] < result.settings.ess_threshold * stats["particles"]
        parts.append(f"{stats['resamples']} resamples · final ESS {stats['final_ess']:.2f} of {stats['particles']}"
                     + (" (below the resampling threshold: particles are not resampled after the last block, "
                        "the answer is drawn by weight)" if low else ""))
    if "decisions" in stats:
        decisions = f"{stats['decisions']} decision{'s' if stats['decisions'] != 1 else ''}"
        parts.append(f"{decisions} of {stats['mean_candidates']:g} candidates · "
                     f"{stats['rollouts']} rollouts of {stats['horizon']} tokens each · an approximate draw")
    if "groups" in stats:
        votes = ", ".join(f"{g['votes']} for {g['answer']!r}" for g in stats["groups"][:5])
        parts.append(f"votes: {votes or 'none'}" + (" …" if len(stats["groups"]) > 5 else "")
                     + f" · grouped by {stats['grouped_by']}"
                     + (f" · {stats['no_answer']} without an answer" if stats["no_answer"] else ""))
    if result.approximate:
        parts.append("log-probabilities estimated by the backend (approximate)")
    return " · ".join(parts)


def summary_line(result: SearchResult) -> str:
    """What was measured, and the latency overlap named for what it is: not a speedup."""
    usage = result.usage
    tokens = usage["completion_tokens"]
    overlap = result.sum_request_s / result.wall_s if result.wall_s else 0.0
    return (
        f"{result.settings.strategy} · seed {result.seed} · {result.settings.mode} · wall {result.wall_s:.2f}s · "
        f"requests {result.requests} (retries {usage['retries']}, failures {usage['failures']}) · "
        f"latency overlap x{overlap:.1f} (sum of request latencies {result.sum_request_s:.2f}s; "
        f"`beamtui bench` measures the speedup) · {tokens} tokens, {tokens / max(result.wall_s, 1e-9):.0f} tok/s"
    )


async def run_command(args) -> int:
    values = merged_values(args)
    if not values.get("prompt"):
        raise ConfigError('beamtui run needs a prompt: --prompt TEXT, or prompt = "..." in the --config file')
    check_dashboard_keymap(values)
    search, backend = settings_from(values)
    refuse_other_strategies(vars(args), search.strategy)
    out = stdout_console()
    err = Console(stderr=True)
    sampler = await open_backend(backend)
    try:
        with LiveProgress(err, search, backend) as live:  # on stderr, and only on a terminal: --json too
            result = await run_search(search, sampler, backend, live.on_event)
        endpoints = sampler.describe()
    finally:
        await sampler.aclose()
    if args.json:
        data = result.to_json()
        if endpoints is not None:
            data["endpoints"] = endpoints  # what each endpoint supports, and its health
        print(json.dumps(data, ensure_ascii=False))
    else:
        answer = result.answer
        if answer is not None:
            title = (f"answer · {search.strategy} · target {answer.target(search.alpha):.3f} · "
                     f"{answer.length} tokens")
            out.print(Panel(answer.text.strip() or "(empty)", title=title, title_align="left"))
            out.print(candidates_table(result))
        line = strategy_line(result)
        if line:
            out.print(line, style="dim", soft_wrap=True, markup=False, highlight=False)
        out.print(summary_line(result), style="dim", soft_wrap=True, markup=False, highlight=False)
    if result.error:
        err.print(f"beamtui: error: {result.error}" + (" (best answer so far shown above)" if result.answer else ""),
                  soft_wrap=True, markup=False, highlight=False)
        return 1
    return 0
