"""`beamtui bench`: the same seeded search sequentially and in parallel, for each width of the strategy."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from engine.bench import BenchRow, run_bench
from engine.errors import ConfigError
from engine.settings import BackendSettings, settings_from
from tui.commands import check_dashboard_keymap, open_backend, stdout_console
from tui.options import merged_values, refuse_other_strategies


def parse_widths(text: str) -> list[int]:
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--widths must be comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ConfigError(f"--widths must be integers >= 1, got {text!r}")
    return widths


def ideal_note(backend: BackendSettings) -> str:
    """What the ideal column assumes, and why a compute-bound backend stays below it."""
    note = ("ideal: the speedup if a round's requests overlapped without slowing each other, as on a server with "
            "spare capacity (each round's requests, up to the cap, in the time of one); efficiency = speedup / ideal.")
    if backend.backend == "local" and not backend.latency:
        note += (" The local model computes every request on this machine's cores, so requests in parallel share "
                 "them: parallel gains what batched decoding buys, well under the ideal; --latency adds a simulated "
                 "network delay to see the latency-bound case.")
    return note


def bench_table(rows: list[BenchRow], title: str, caption: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name in ("width", "requests", "tokens", "seq_s", "par_s", "speedup", "ideal", "efficiency", "same answer"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for row in rows:
        table.add_row(
            str(row.width), str(row.requests), str(row.tokens), f"{row.seq_s:.2f}", f"{row.par_s:.2f}",
            f"{row.speedup:.2f}x", f"{row.ideal:.2f}x", f"{row.efficiency:.2f}", "yes" if row.same_answer else "NO",
        )
    return table


async def bench_command(args) -> int:
    values = merged_values(args)
    check_dashboard_keymap(values)
    search, backend = settings_from(values)
    refuse_other_strategies(vars(args), search.strategy)
    widths = parse_widths(args.widths)
    if search.width_field is None and widths != [1]:
        raise ConfigError(f"--strategy {search.strategy} has no width; use --widths 1")
    latency = f"{backend.latency:g}s per request (simulated)" if backend.latency else "none added"
    title = (
        f"sequential vs parallel · {search.strategy} · {backend.backend} · block {search.block_tokens}/"
        f"{search.max_tokens} tokens · max_concurrent {backend.max_concurrent} · latency {latency}"
    )
    err = Console(stderr=True)
    sampler = await open_backend(backend)
    try:
        with err.status("benchmarking…") as status:
            rows = await run_bench(
                search, backend, sampler, widths,
                on_row=lambda row: status.update(f"width {row.width} done: {row.speedup:.2f}x"),
            )
    finally:
        await sampler.aclose()
    if args.json:
        payload = {"rows": [row.as_dict() for row in rows], "strategy": search.strategy,
                   "simulated_latency_s": backend.latency, "backend": backend.backend,
                   "max_concurrent": backend.max_concurrent}
        print(json.dumps(payload))
    else:
        stdout_console().print(bench_table(rows, title, ideal_note(backend)))
    return 0
