"""The dashboard driven with Pilot, on the real embedded model (small token counts) or the loopback endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from engine.backends.local import PLAIN, LocalSampler
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import openai_settings, run_cli
from tests.replay import ReplayHost, pin_timings
from tui.app import BeamtuiApp
from tui.panels.beams import BeamsPanel
from tui.panels.log import LogPanel
from tui.panels.settings_bar import SettingsBar

SIZE = (160, 48)
SMALL = SearchSettings(prompt="Name a color.", beam_width=2, n_per_beam=2, block_tokens=4, max_tokens=8, seed=5,
                       temperature=1.0)
LOCAL = BackendSettings(max_concurrent=16, threads=2)


async def wait_for(pilot, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            state = pilot.app.state
            raise AssertionError(f"condition not met in time (run {state.run_id}: {state.status}, {state.error})")
        await pilot.pause(0.05)


def kept_rows(app) -> int:
    return sum(not row.pruned for row in app.state.visible_beams())


def log_text(app) -> str:
    return "\n".join(line.text for line in app.query_one(LogPanel).lines)


async def test_the_app_starts_searching_and_beam_rows_appear():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        await pilot.pause(0.2)
        table = app.query_one(BeamsPanel).query_one("DataTable")
        assert table.row_count == kept_rows(app) == 2
        assert app.state.best_text
        assert "search finished" in log_text(app)


async def test_plus_widens_the_beam_and_the_new_search_shows_three_beams():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        first_run = app.state.run_id
        await pilot.press("plus")
        assert "beam_width 3" in app.query_one(SettingsBar).text
        await wait_for(pilot, lambda: app.state.run_id != first_run and app.state.status == "finished")
        await pilot.pause(0.2)
        assert app.state.search.beam_width == 3
        assert kept_rows(app) == 3
        assert app.query_one(BeamsPanel).query_one("DataTable").row_count == 3


async def test_m_flips_the_mode_and_both_modes_fill_the_comparison():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        await pilot.press("m")
        assert app.search.mode == "sequential"
        assert "sequential" in app.query_one(SettingsBar).text
        await wait_for(pilot, lambda: app.state.search.mode == "sequential" and app.state.status == "finished")
        (times,) = app.comparisons.values()
        assert times.sequential > 0 and times.parallel > 0


async def test_p_edits_the_prompt_and_enter_starts_a_new_search():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status in ("running", "finished"))
        first_run = app.state.run_id
        await pilot.press("p")
        prompt_input = app.screen.query_one("#prompt-input")
        prompt_input.value = ""
        await pilot.press(*"Name a fruit.")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.run_id != first_run and app.state.status == "finished")
        assert app.search.prompt == "Name a fruit."
        assert app.state.search.prompt == "Name a fruit."


async def test_events_of_a_replaced_run_are_dropped():
    app = BeamtuiApp(SMALL.replace(max_tokens=16), LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "running")
        old = app.state
        app.start_search()  # replace the running search at once
        await wait_for(pilot, lambda: app.state.status == "finished")
        assert old.status == "cancelled"
        assert app.state.requests_done == app.state.result.requests  # no request of the old run counted


def decoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "beamtui-llama"}


async def test_q_mid_run_exits_within_a_second_and_stops_the_engine():
    others = decoder_threads()  # the session's shared model, not this app's
    app = BeamtuiApp(SMALL.replace(max_tokens=64, block_tokens=32), LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "running" and app.state.in_flight > 0)
        pressed = time.perf_counter()
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, timeout=5)
    elapsed = time.perf_counter() - pressed
    assert elapsed < 1.0
    deadline = time.monotonic() + 2
    while decoder_threads() - others and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not decoder_threads() - others


async def test_a_failing_backend_shows_in_the_log_without_crashing(fault_server):
    backend = openai_settings(fault_server.base_url, max_retries=0)
    app = BeamtuiApp(SMALL, backend)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        fault_server.config.rate_500 = 1.0
        await pilot.press("r")
        await wait_for(pilot, lambda: app.state.status == "failed")
        await pilot.pause(0.3)
        assert "block 1 failed" in log_text(app) and "HTTP 500" in log_text(app)
        assert app.is_running
        await pilot.press("plus")  # still responsive
        assert app.search.beam_width == 3


async def test_an_unreachable_backend_chosen_in_settings_is_reported(fault_server):
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        screen = app.screen
        screen.query_one("#backend").value = "openai"
        screen.query_one("#base_url").value = "http://127.0.0.1:9/v1"
        screen.query_one("#model").value = "m"
        screen.query_one("#tokenizer").value = "embedded"
        screen.query_one("#apply").press()
        await wait_for(pilot, lambda: app.backend.backend == "openai")
        await wait_for(pilot, lambda: app.state.status == "failed")
        await pilot.pause(0.3)
        assert "cannot reach http://127.0.0.1:9/v1" in log_text(app)


async def test_settings_screen_rejects_a_bad_url_and_switches_backend(fault_server):
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        screen = app.screen
        screen.query_one("#backend").value = "openai"
        screen.query_one("#base_url").value = "not a url"
        screen.query_one("#model").value = "synthetic"
        screen.query_one("#apply").press()
        await pilot.pause(0.1)
        assert "malformed base URL" in str(screen.query_one("#settings-error").render())
        screen.query_one("#base_url").value = fault_server.base_url
        screen.query_one("#tokenizer").value = "embedded"
        screen.query_one("#apply").press()
        await wait_for(pilot, lambda: app.backend.backend == "openai")
        await wait_for(pilot, lambda: app.state.backend.backend == "openai" and app.state.status == "finished")
        assert app.state.result.requests > 0 and fault_server.stats.answered > 0


async def test_s_saves_the_run_as_json(tmp_path):
    app = BeamtuiApp(SMALL, LOCAL, save_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        await pilot.press("s")
        (path,) = tmp_path.glob(f"beamtui-*-{app.state.run_id}.json")
        saved = json.loads(path.read_text())
    assert saved["settings"]["search"]["beam_width"] == 2
    assert saved["result"]["best"]["text"] == app.state.best_text
    assert saved["block_timings"] and saved["events"]["requests"] == saved["result"]["timing"]["requests"]


async def test_knobs_are_in_the_command_palette():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE):
        titles = [command.title for command in app.get_system_commands(app.screen)]
    for needle in ("width+ (+)", "mode (m)", "prompt (p)", "save (s)", "backend (c)"):
        assert any(needle in title for title in titles), needle


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--beam-width", "0"], "beam-width must be an integer >= 1"),
        (["--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "embedded",
          "--max-retries", "0"], "cannot reach"),
        (["--config", "/nonexistent.toml"], "config file not found"),
    ],
)
def test_bad_launch_flags_exit_2_before_the_screen_opens(argv, message):
    done = run_cli(*argv, timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "\x1b[" not in done.stdout + done.stderr


def test_a_toml_config_sets_the_launch_settings(tmp_path):
    config = tmp_path / "beamtui.toml"
    config.write_text('beam-width = 3\nn_per_beam = 2\ntemperature = "hot"\n')
    done = run_cli("--config", str(config))
    assert done.returncode == 2 and "setting 'temperature'" in done.stderr
    config.write_text("beam-width = 3\n[oops\n")
    done = run_cli("--config", str(config))
    assert done.returncode == 2 and "invalid TOML" in done.stderr


class FixedClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def recorded_events():
    """A real search in the plain weight layout, which every machine runs the same way, so snapshots match."""

    async def record():
        sampler = LocalSampler(threads=2, layout=PLAIN)
        await sampler.start()
        try:
            await run_search(SMALL.replace(max_tokens=12), sampler, LOCAL, events.append, run_id="rec")
        finally:
            await sampler.aclose()

    events = []
    asyncio.run(record())
    return pin_timings(events)


def test_main_screen_snapshot(snap_compare, recorded_events):
    clock = FixedClock()

    async def replayed(pilot):
        await wait_for(pilot, lambda: pilot.app.state.status == "finished")
        clock.now += 10  # ten seconds later: rates settle, pruned rows fade
        await pilot.pause(0.5)

    app = BeamtuiApp(SMALL.replace(max_tokens=12), LOCAL, clock=clock,
                     host_factory=lambda post: ReplayHost(post, recorded_events))
    assert snap_compare(app, terminal_size=SIZE, run_before=replayed)


def test_settings_screen_snapshot(snap_compare, recorded_events):
    app = BeamtuiApp(SMALL, LOCAL, clock=FixedClock(), host_factory=lambda post: ReplayHost(post, recorded_events))
    assert snap_compare(app, terminal_size=SIZE, press=["c"])



def test_the_shipped_example_config_loads():
    from tests.conftest import ROOT
    from tui.options import read_config, settings_from

    search, backend = settings_from(read_config(str(ROOT / "assets" / "beamtui.example.toml")))
    assert (search.beam_width, search.seed, backend.backend) == (4, 1, "local")
