"""The dashboard driven with Pilot, on the real embedded model (small token counts) or the loopback endpoint, and
snapshots of recorded runs replayed (tests/fixtures), which hold no model output."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from engine.registry import strategy_info, strategy_names
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import openai_settings, run_cli
from tests.fault_server import FaultConfig
from tests.replay import ManualClock, replay, replay_app
from tui.app import BeamtuiApp
from tui.panels.keys_bar import KeysBar
from tui.panels.log import LogPanel
from tui.panels.population import PopulationPanel
from tui.panels.settings_bar import SettingsBar
from tui.panels.tree import TreePanel
from tui.screens.settings import SettingsScreen

SIZE = (160, 48)
SMALL = SearchSettings(prompt="Name a color.", beam_width=2, n_per_beam=2, block_tokens=4, max_tokens=8, seed=5,
                       temperature=1.0)
LOCAL = BackendSettings(max_concurrent=16, threads=2)


def dialog_keys(app) -> tuple:
    """The keys the settings dialog's own bar shows; empty until it is open and mounted."""
    bars = app.screen.query(KeysBar) if isinstance(app.screen, SettingsScreen) else ()
    return bars[0].keys if bars else ()


async def wait_for(pilot, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            state = pilot.app.state
            raise AssertionError(f"condition not met in time (run {state.run_id}: {state.status}, {state.error})")
        await pilot.pause(0.05)


def kept_rows(app) -> int:
    return sum(m.status in ("kept", "finished") for m in app.state.visible_members())


def log_text(app) -> str:
    return "\n".join(line.text for line in app.query_one(LogPanel).lines)


async def test_the_app_starts_searching_and_candidate_rows_appear():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        await pilot.pause(0.2)
        table = app.query_one(PopulationPanel).query_one("DataTable")
        assert table.row_count == kept_rows(app) == 2
        assert app.state.best_text
        assert "search finished" in log_text(app)
        assert "★" in str(app.query_one(TreePanel).render())


@pytest.mark.parametrize("strategy", strategy_names())
async def test_every_strategy_shows_its_population_tree_and_progress_on_the_embedded_model(strategy):
    settings = SMALL.replace(strategy=strategy, chains=2, mcmc_steps=1, particles=3, best_of=3, top_k=3, rollouts=2)
    app = BeamtuiApp(settings, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        await pilot.pause(0.2)
        population = app.query_one(PopulationPanel)
        assert population.border_title == strategy_info(strategy).view.title
        assert population.query_one("DataTable").row_count >= 1
        assert "★" in str(app.query_one(TreePanel).render())
        assert app.state.best_text and "search finished" in log_text(app)


@pytest.mark.parametrize("cut", ["uniform", "entropy"])
async def test_each_chain_shows_where_its_steps_cut_it(cut):
    settings = SMALL.replace(strategy="mcmc", chains=2, mcmc_steps=3, cut=cut)
    app = BeamtuiApp(settings, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        await pilot.pause(0.2)
        population = app.query_one(PopulationPanel)
        chains = [m for m in app.state.visible_members() if m.status in ("kept", "finished")]
        assert any(m.cut_offsets for m in chains)
        cells = [str(population.table.get_row_at(i)[-1]) for i in range(population.table.row_count)]
        assert any("┊" in cell for cell in cells)
        assert ("entropy rises" if cut == "entropy" else "cut each chain (uniformly)") in population.border_subtitle


async def test_plus_widens_the_beam_and_the_new_search_shows_three_beams():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        first_run = app.state.run_id
        await pilot.press("plus")
        assert "beam:3x2" in app.query_one(SettingsBar).text
        await wait_for(pilot, lambda: app.state.run_id != first_run and app.state.status == "finished")
        await pilot.pause(0.2)
        assert app.state.search.beam_width == 3
        assert kept_rows(app) == 3
        assert app.query_one(PopulationPanel).query_one("DataTable").row_count == 3


async def test_m_runs_the_other_mode_with_the_same_seed_and_the_headline_is_the_measured_pair():
    app = BeamtuiApp(SMALL.replace(seed=None), LOCAL)  # no seed given: the app draws one per pair
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished")
        first_seed = app.state.seed
        assert "not run yet" in app._timings.speedup.text
        await pilot.press("m")
        assert app.search.mode == "sequential"
        assert "sequential" in app.query_one(SettingsBar).text
        await wait_for(pilot, lambda: app.state.search.mode == "sequential" and app.state.status == "finished")
        assert app.state.seed == first_seed
        (times,) = app.comparisons.values()
        assert times.sequential > 0 and times.parallel > 0
        await pilot.pause(0.2)
        assert f"measured speedup x{times.sequential / times.parallel:.2f}" in app._timings.speedup.text
        await pilot.press("r")  # a rerun draws a new seed: a new pair
        await wait_for(pilot, lambda: app.state.status == "finished" and app.state.seed != first_seed)


async def test_p_edits_the_prompt_and_enter_starts_a_new_search():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status in ("running", "finished"))
        first_run = app.state.run_id
        await pilot.press("p")
        prompt_input = app.screen.query_one("#prompt-input")
        prompt_input.value = ""
        await pilot.press(*"Say more, quietly: m+a.")  # the dashboard's keys type while the prompt is edited
        assert app.is_running and app.search.mode == "parallel" and app.search.strategy == SMALL.strategy
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.run_id != first_run and app.state.status == "finished")
        assert app.search.prompt == "Say more, quietly: m+a."
        assert app.state.search.prompt == "Say more, quietly: m+a."
        assert not app.query_one("#prompt-editor").display
        await pilot.press("p", "escape", "m")  # closed again, the keys are the dashboard's
        assert app.search.mode == "sequential" and app.search.prompt == "Say more, quietly: m+a."


async def test_the_key_bar_shows_the_keys_that_act_now_and_a_click_runs_one(fault_server):
    app = BeamtuiApp(SMALL, openai_settings(fault_server.base_url))
    async with app.run_test(size=SIZE) as pilot:
        bar = app.query_one(KeysBar)
        await pilot.pause()
        assert ("m", "mode") in bar.keys and ("esc", "cancel") not in bar.keys
        await pilot.press("p")
        await pilot.pause()
        assert ("esc", "cancel") in bar.keys and ("m", "mode") not in bar.keys  # typing, not knobs
        await pilot.press("escape")
        await pilot.pause()
        assert ("m", "mode") in bar.keys
        column = str(bar.render()).index(" m mode")
        await pilot.click(KeysBar, offset=(column + 1, 0))
        assert app.search.mode == "sequential"


async def test_page_down_and_end_scroll_the_stacked_panels_whatever_has_focus():
    """At 80x24 the panels stack in one column taller than the screen: PageDown and End scroll it at once."""
    clock = ManualClock()
    app = replay_app("beam", clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await replay(pilot, clock, "beam", then=1.0)
        dashboard = app.query_one("#dashboard")
        assert dashboard.max_scroll_y > 0 and dashboard.scroll_y == 0 and not dashboard.has_focus
        await pilot.press("pagedown")
        await pilot.pause()
        assert dashboard.scroll_y > 0
        await pilot.press("end")
        await pilot.pause()
        assert dashboard.scroll_y == dashboard.max_scroll_y
        await pilot.press("home")
        await pilot.pause()
        assert dashboard.scroll_y == 0


@pytest.mark.parametrize("size", [(160, 48), (80, 24)])
async def test_the_log_wraps_a_long_line_whole_within_its_panel(size):
    clock = ManualClock()
    app = replay_app("beam", clock)
    async with app.run_test(size=size) as pilot:
        await replay(pilot, clock, "beam", then=1.0)
        log = app.query_one(LogPanel)
        words = [f"word{i:03d}" for i in range(60)]
        log.note(clock(), " ".join(words))
        await pilot.pause()
        width = log.scrollable_content_region.width
        assert width < 80 and all(line.cell_length <= width for line in log.lines)
        written = " ".join(line.text for line in log.lines[-12:])
        assert all(word in written.split() for word in words)  # nothing lost at a wrap


async def test_the_prompt_editor_selects_the_prompt_so_typing_replaces_it_and_an_arrow_keeps_it():
    app = BeamtuiApp(SMALL, BackendSettings(), host_factory=lambda post: __import__("tests.replay").replay
                     .ReplayHost(post))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        assert "typing replaces it" in str(app.query_one("#prompt-editor").query_one("Label").render())
        await pilot.press(*"Why?", "enter")
        await pilot.pause()
        assert app.search.prompt == "Why?"
        await pilot.press("p", "right", *" Say.", "enter")
        await pilot.pause()
        assert app.search.prompt == "Why? Say."


async def test_timings_rows_carry_the_whole_seed_and_tell_two_prompts_apart():
    clock = ManualClock()
    app = replay_app("beam", clock)
    async with app.run_test(size=SIZE) as pilot:
        await replay(pilot, clock, "beam", then=1.0)
        first = app.state.search
        app._record_timing(first.replace(seed=2004488140), 1.5)
        app._record_timing(first.replace(seed=2004488140, prompt="Another prompt."), 2.5)
        app.refresh_panels()
        await pilot.pause()
        table = app._timings.runs
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        seeds = [row[1] for row in rows]
        labels = [row[0] for row in rows]
        assert "2004488140" in seeds and labels[-2].startswith("#1 ") and labels[-1].startswith("#2 ")
        assert labels[-2][3:] == labels[-1][3:]  # the same search, told apart by its prompt


@pytest.mark.parametrize(("strategy", "label"), [("beam", "score alpha*log p / length^penalty"),
                                                 ("smc", "target alpha*log p"), ("mcmc", "target alpha*log p")])
async def test_the_answer_panel_says_what_its_score_is(strategy, label):
    clock = ManualClock()
    app = replay_app(strategy, clock)
    async with app.run_test(size=SIZE) as pilot:
        await replay(pilot, clock, strategy, then=1.0)
        subtitle = app.query_one("#answer").border_subtitle
        assert subtitle == f"{label} {app.state.best_score:.4f}"


async def test_events_of_a_replaced_run_are_dropped():
    app = BeamtuiApp(SMALL.replace(max_tokens=16), LOCAL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "running")
        old = app.state
        app.start_search()  # replace the running search at once
        await wait_for(pilot, lambda: app.state.status == "finished")
        assert old.status == "cancelled"
        assert app.state.requests_done == app.state.result.requests  # no request of the old run counted


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=1.0)], indirect=True)
async def test_a_cycles_the_strategy_mid_run_and_the_old_runs_events_are_dropped(fault_server):
    """Every request takes a second on this endpoint, so each strategy is caught mid-run."""
    app = BeamtuiApp(SMALL.replace(max_tokens=16, block_tokens=4), openai_settings(fault_server.base_url))
    async with app.run_test(size=SIZE) as pilot:
        seen = []
        for expected in strategy_names()[1:]:
            await wait_for(pilot, lambda: app.state.status == "running")
            old = app.state
            await pilot.press("a")
            assert app.search.strategy == expected
            await wait_for(pilot, lambda old=old: app.state is not old and app.state.status != "starting")
            assert old.status == "cancelled"
            seen.append(app.state.search.strategy)
        await wait_for(pilot, lambda: app.state.status == "finished")
        result = app.state.result
        assert result.settings.strategy == "sample" and app.state.requests_done == result.requests
        assert all(m.status in ("kept", "finished") for m in app.state.population)
        assert seen == list(strategy_names()[1:])


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
    app = BeamtuiApp(SMALL, LOCAL.replace(max_retries=0))  # refused at once, not after five backoffs
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_for(pilot, lambda: ("esc", "cancel") in dialog_keys(app))  # the dialog's, not the dashboard's
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
        await wait_for(pilot, lambda: ("esc", "cancel") in dialog_keys(app))  # the dialog's, not the dashboard's
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
    assert saved["result"]["answer"]["text"] == app.state.best_text
    assert saved["rounds"] and saved["events"]["requests"] == saved["result"]["timing"]["requests"]


async def test_knobs_are_in_the_command_palette():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE):
        titles = [command.title for command in app.get_system_commands(app.screen)]
    for needle in ("width+ (+)", "mode (m)", "prompt (p)", "save (s)", "backend (c)", "strategy (a)", "keys (?)"):
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


def test_the_shipped_example_config_loads():
    from engine.settings import settings_from
    from tests.conftest import ROOT
    from tui.options import read_config

    search, backend = settings_from(read_config(str(ROOT / "assets" / "beamtui.example.toml")))
    assert (search.beam_width, search.seed, backend.backend) == (4, 1, "local")


# Snapshots of recorded runs (tests/fixtures/*.jsonl, written by `python -m tests.fixtures.record`).

@pytest.mark.parametrize("strategy", ["beam", "mcmc", "smc", "best-of-n", "greedy"])
def test_each_strategy_view_when_finished(snap_compare, strategy):
    clock = ManualClock()

    async def replayed(pilot):
        await replay(pilot, clock, strategy, then=1.0)

    assert snap_compare(replay_app(strategy, clock), terminal_size=SIZE, run_before=replayed)


@pytest.mark.parametrize(("strategy", "moment"), [("beam", 0.62), ("smc", 0.62), ("mcmc", 2.33)])
def test_each_strategy_view_mid_run(snap_compare, strategy, moment):
    """Mid-run: candidates growing, and what the last round pruned, resampled away or rejected still marked."""
    clock = ManualClock()

    async def replayed(pilot):
        await replay(pilot, clock, strategy, until=moment)

    assert snap_compare(replay_app(strategy, clock), terminal_size=SIZE, run_before=replayed)


@pytest.mark.parametrize("strategy", ["beam", "mcmc"])
def test_the_tree_collapses_to_the_best_path_at_80x24(snap_compare, strategy):
    clock = ManualClock()

    async def replayed(pilot):
        await replay(pilot, clock, strategy, then=1.0)
        pilot.app.query_one("#tree").scroll_visible(animate=False)
        await pilot.pause(0.05)

    assert snap_compare(replay_app(strategy, clock), terminal_size=(80, 24), run_before=replayed)


def test_settings_screen_snapshot(snap_compare):
    clock = ManualClock()

    async def replayed(pilot):
        await replay(pilot, clock, "beam", then=1.0)
        await pilot.press("c")
        await wait_for(pilot, lambda: dialog_keys(pilot.app))  # mounted, under a loaded CPU too

    assert snap_compare(replay_app("beam", clock), terminal_size=SIZE, run_before=replayed)


async def test_at_80x24_every_key_is_on_the_key_bar_and_help_lists_every_key():
    from tui.screens.keys import KeysScreen

    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        bar = app.query_one(KeysBar)
        spans = list(bar._spans())
        on_the_bar = [b.key_display or b.key for b in BeamtuiApp.BINDINGS if b.show]
        assert [shown for *_, shown, _ in spans] == [k if len(k) == 1 else {"question_mark": "?", "plus": "+",
                                                     "minus": "-"}.get(k, k) for k in on_the_bar]
        assert {row for row, *_ in spans} == {0, 1} and all(end - 2 <= 80 for _, _, end, _, _ in spans)
        lines = str(bar.render()).splitlines()
        assert len(lines) == 2 and lines[1].startswith(" + width+") and "B block-" in lines[1]
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
        table = app.screen.query_one("#keys-table")
        assert table.row_count == len(BeamtuiApp.BINDINGS) + 1  # and the command palette
        assert all(sentence for _, _, sentence in app.screen.rows)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, KeysScreen)


async def test_palette_entries_say_what_each_key_does():
    app = BeamtuiApp(SMALL, LOCAL)
    async with app.run_test(size=SIZE):
        commands = {command.title: command.help for command in app.get_system_commands(app.screen)}
    assert commands["T+ (t)"] == "Raise the proposal temperature by 0.05."
    assert not any(text.startswith("the ") and text.endswith(" key") for text in commands.values())


async def test_s_mid_run_saves_a_run_marked_partial(tmp_path):
    app = BeamtuiApp(SMALL.replace(max_tokens=64, block_tokens=8), LOCAL, save_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "running")
        await pilot.press("s")
        (path,) = tmp_path.glob(f"beamtui-*-{app.state.run_id}-partial.json")
        saved = json.loads(path.read_text())
    assert saved["partial"] is True and saved["status"] == "running" and saved["result"] is None


def test_keys_screen_at_80x24(snap_compare):
    clock = ManualClock()

    async def replayed(pilot):
        await replay(pilot, clock, "beam", then=1.0)
        await pilot.press("question_mark")
        await pilot.pause(0.1)

    assert snap_compare(replay_app("beam", clock), terminal_size=(80, 24), run_before=replayed)


def test_settings_dialog_at_80x24_scrolls_to_its_buttons(snap_compare):
    clock = ManualClock()

    async def replayed(pilot):
        await replay(pilot, clock, "beam", then=1.0)
        await pilot.press("c")
        await wait_for(pilot, lambda: dialog_keys(pilot.app))
        pilot.app.screen.query_one("#apply").scroll_visible(animate=False)
        await pilot.pause(0.1)

    assert snap_compare(replay_app("beam", clock), terminal_size=(80, 24), run_before=replayed)


async def test_a_served_visitor_cannot_send_the_api_key_to_another_host(monkeypatch):
    """Served, the dashboard's key is pinned to the endpoint it was started with: pointing the backend dialog at
    another server sends it no Authorization header (two loopback servers, each recording what it got)."""
    from textual.widgets import Input

    from tests.fault_server import ThreadedFaultServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pinned-0123456789")
    with ThreadedFaultServer(FaultConfig()) as own, ThreadedFaultServer(FaultConfig()) as other:
        backend = openai_settings(own.base_url).pinned_key()  # what `launch` does under `beamtui serve`
        app = BeamtuiApp(SMALL, backend)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.status == "finished")
            await pilot.press("c")
            await wait_for(pilot, lambda: dialog_keys(app))
            app.screen.query_one("#base_url", Input).value = other.base_url
            app.screen.query_one("#apply").press()
            await wait_for(pilot, lambda: app.backend.base_url == other.base_url and app.state.status == "finished")
        assert other.stats.requests > 0
    assert set(own.stats.authorizations) == {"Bearer sk-test-pinned-0123456789"}
    assert set(other.stats.authorizations) == {""}  # answered, and never saw the key


class _IdleEvalHost:
    """Stands where EvalHost stands; the test posts the eval's results and the followed search's events itself."""

    def __init__(self, post, plan):
        pass

    def serve(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_the_eval_dashboard_at_80x24_keeps_accuracy_and_cost_in_view(snap_compare, tmp_path):
    """Four strategies on four problems, finished; the panels follow a recorded smc search. Narrow, the table keeps
    accuracy, the paired difference and the cost multiples, whole."""
    from engine.eval.plan import plan_eval
    from engine.eval.summary import timing_record
    from tests.replay import recorded
    from tui.engine_host import EngineBatch
    from tui.eval_app import EvalApp
    from tui.eval_host import EvalResults

    specs = ["greedy", "vote:4", "smc:4", "mcmc:1x2"]
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"question {i}", "answer": str(i)}) + "\n"
                                for i in range(4)))
    values = {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "word-chain",
              "tokenizer": "embedded", "max_concurrent": 16}
    plan = plan_eval(values, problems=problems, out=tmp_path / "out.jsonl", strategies=",".join(specs),
                     grader="numeric", template="{question}")
    records = [{"id": f"p{i}", "strategy": spec, "sample": 0, "correct": i < rank + 1, "extracted": str(i),
                "tokens": 20 * (rank + 1), "requests": 2 * rank + 1, "wall_s": 0.5 * (rank + 1)}
               for rank, spec in enumerate(specs) for i in range(4)]
    records += [timing_record(spec, 4, 2.0 * (rank + 1), 4) for rank, spec in enumerate(specs)]
    clock = ManualClock()
    app = EvalApp(plan, host_factory=_IdleEvalHost, clock=clock)

    async def finished(pilot):
        await pilot.pause()
        app.post_message(EngineBatch([event for _, event in recorded("smc")]))
        app.post_message(EvalResults(records, finished=True))
        await pilot.pause(0.2)
        app.refresh_panels()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=finished)
