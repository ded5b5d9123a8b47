"""Sequential against parallel, never overstated: on a compute-bound backend, where concurrent requests share one
throughput and so gain nothing from running together, no screen or line may claim a speedup that a measured
sequential run does not show. The latency overlap (four requests in flight at once) is not a speedup."""

from __future__ import annotations

import re
import time

from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.synthetic import SKY_CORPUS, word_chain
from tui.app import BeamtuiApp
from tui.commands.run import summary_line
from tui.engine_host import EngineHost
from tui.panels.log import LogPanel
from tui.panels.timings import TimingsPanel

TOKENS_PER_S = 400  # shared by every request in flight, one token at a time, like a busy single-GPU server
SETTINGS = SearchSettings(prompt="Why is the sky blue?", beam_width=4, n_per_beam=4, block_tokens=6, max_tokens=12,
                          seed=1, temperature=1.0)
BACKEND = BackendSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="word-chain", max_concurrent=16)


def compute_bound():
    # No full stops: every continuation runs to the block's end, so both modes do the same work.
    return word_chain(SKY_CORPUS, ends=False, tokens_per_s=TOKENS_PER_S)


def claimed_speedups(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"speedup x(\d+(?:\.\d+)?)", text)]


async def test_a_compute_bound_backend_shows_no_speedup_it_does_not_have():
    sampler = compute_bound()

    async def opener(settings, sampler_=sampler):
        return sampler_

    app = BeamtuiApp(SETTINGS.replace(seed=None), BACKEND, host_factory=lambda post: EngineHost(post, opener=opener))
    async with app.run_test(size=(160, 48)) as pilot:
        async def finished(mode: str) -> None:
            deadline = time.monotonic() + 60
            while not (app.state.search.mode == mode and app.state.status == "finished"):
                assert time.monotonic() < deadline, app.state.status
                await pilot.pause(0.05)

        await finished("parallel")
        overlap = app.state.rounds[0].overlap
        await pilot.press("m")
        await finished("sequential")
        await pilot.pause(0.3)
        (measured,) = app.comparisons.values()
        timings = app.query_one(TimingsPanel)
        shown = timings.speedup.text + "\n" + "\n".join(line.text for line in app.query_one(LogPanel).lines)
    assert overlap > 3  # four requests really were in flight together...
    # ...and gained nothing, as a compute-bound backend must. The parallel run is the app's first, sharing the CPU
    # with the dashboard's start-up: under a loaded suite it measured 0.70 of the sequential one's speed.
    assert 0.5 < measured.speedup < 1.4
    assert f"measured speedup x{measured.speedup:.2f}" in shown
    assert claimed_speedups(shown) and all(value <= measured.speedup + 0.05 for value in claimed_speedups(shown))
    assert "overlap" in shown and "one at a time" not in shown


async def test_the_run_summary_calls_the_overlap_an_overlap():
    result = await run_search(SETTINGS, compute_bound(), BACKEND)
    line = summary_line(result)
    assert "latency overlap x" in line and not claimed_speedups(line)
    assert result.sum_request_s / result.wall_s > 3  # the overlap is there, and named for what it is
