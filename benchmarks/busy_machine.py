"""The default dashboard's first search on a machine that other jobs keep busy.

    python -m benchmarks.busy_machine            (from the repository root; a minute or two)

Two processes spin on the CPU (as two busy jobs would on a 2-core machine) while `beamtui`'s dashboard, with
its default settings on the embedded model, runs its first search headless. Prints the search's wall time,
its retries and failures: a slow decoder must make a slow search, never retries from token 0 (the local
backend's timeout covers a decoder that stands still, not one that is slow).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

from engine.settings import BackendSettings, SearchSettings
from tui.app import BeamtuiApp

BUSY = 2


def spin() -> None:
    while True:
        pass


async def first_search() -> None:
    app = BeamtuiApp(SearchSettings(), BackendSettings())
    started = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        while app.state.status not in ("finished", "failed"):
            await pilot.pause(0.5)
        state = app.state
        print(f"first search {state.status} in {time.perf_counter() - started:.1f}s with {BUSY} busy processes "
              f"on {os.cpu_count()} cores: {state.requests_done} requests, {state.retries} retries, "
              f"{state.failures} failures, {state.tokens} tokens, timeout {app.backend.timeout:g}s")


def main() -> None:
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(BUSY)]
    for process in spinners:
        process.start()
    try:
        asyncio.run(first_search())
    finally:
        for process in spinners:
            process.terminate()


if __name__ == "__main__":
    main()
