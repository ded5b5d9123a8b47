"""The config file's [keymap]: binding ids to keys, checked before the screen opens, and live in the dashboard."""

from __future__ import annotations

import pytest

from tests.conftest import openai_settings, run_cli
from tests.test_tui import SIZE, SMALL
from tui.app import BeamtuiApp
from tui.panels.keys_bar import KeysBar
from tui.panels.settings_bar import SettingsBar


async def test_a_remapped_knob_answers_to_its_new_key_only(fault_server):
    app = BeamtuiApp(SMALL, openai_settings(fault_server.base_url), keymap={"width_up": "ctrl+w,f5"})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus")  # its old key now does nothing
        assert "beam:2x2" in app.query_one(SettingsBar).text
        await pilot.press("ctrl+w")
        assert "beam:3x2" in app.query_one(SettingsBar).text
        await pilot.press("f5")
        assert "beam:4x2" in app.query_one(SettingsBar).text
        titles = [command.title for command in app.get_system_commands(app.screen)]
        keys = {description: shown for shown, description in app.query_one(KeysBar).keys}
    assert keys["width+"] not in ("+", ""), keys
    assert any(title.startswith("width+ (") and "+)" not in title for title in titles), titles


BAD_KEYMAPS = [
    ('width_upp = "w"', "unknown binding id 'width_upp'"),
    ('width_up = "m"', "m would be both toggle_mode and width_up"),
    ('rerun = "ctrl+p"', "ctrl+p would be both the command palette and rerun"),
    ('rerun = "ctrl+upp"', "'ctrl+upp' is not a key"),
    ('rerun = 5', "rerun must be a key"),
    ('prompt_cancel = "q"', "q would be both prompt_cancel and quit"),
]


@pytest.mark.parametrize(("line", "message"), BAD_KEYMAPS, ids=[m for _, m in BAD_KEYMAPS])
def test_a_bad_keymap_exits_2_with_one_line(tmp_path, line, message):
    config = tmp_path / "beamtui.toml"
    config.write_text(f"beam-width = 3\n[keymap]\n{line}\n")
    done = run_cli("--config", str(config), timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_eval_dashboard_checks_its_keymap_too(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"question": "1+1?", "answer": "2"}\n')
    config = tmp_path / "beamtui.toml"
    config.write_text('[keymap]\nwidth_up = "w"\n')  # the eval dashboard has no width knob
    done = run_cli("eval", "--problems", str(problems), "--tui", "--config", str(config), "--out",
                   str(tmp_path / "out.jsonl"), timeout=60)
    assert done.returncode == 2 and "unknown binding id 'width_up'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
