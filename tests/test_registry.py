"""A strategy is one module and one registry line: a toy strategy defined here, registered here, reaches `beamtui
run --strategy`, eval's spec parsing, `run --json` and the dashboard without any other file knowing of it."""

from __future__ import annotations

import json

import pytest

from engine import registry
from engine.errors import ConfigError
from engine.eval.evaluator import parse_strategies
from engine.registry import Column, PopulationView, StrategyInfo, register, strategy_names
from engine.scoring import rank
from engine.settings import SearchSettings
from engine.strategies.base import ROOT, Outcome, SearchContext
from tests.conftest import openai_settings
from tests.fault_server import FaultConfig
from tui.cli import main


class LastOfN:
    """N whole answers; the answer is the last one asked for, whatever its score."""

    async def run(self, search: SearchContext) -> Outcome:
        requests = [(search.request(ROOT, n=1, max_tokens=search.settings.max_tokens, key=("toy", index)), ROOT)
                    for index in range(search.settings.best_of)]
        outcomes = await search.round(1, "sample", requests)
        answers = [search.extend(ROOT, continuations[0]) for continuations in outcomes]
        search.report([search.member(a, slot, "kept") for slot, a in enumerate(answers)], answers[-1])
        return Outcome(answers[-1], rank(answers), stats={"asked": len(answers)})


TOY = StrategyInfo(
    "last-of-n", LastOfN, lambda settings: f"the last of {settings.best_of}: whatever it scores",
    PopulationView("Toys", (Column("tokens", 6, "tokens"), Column("target", 9, "target", ".2f"))),
    sizes=("best_of",), width="best_of",
)


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    del registry._REGISTRY[TOY.name]  # the other tests see the built-ins only


def test_an_unregistered_strategy_is_refused_everywhere():
    assert "last-of-n" not in strategy_names()
    with pytest.raises(ConfigError, match="unknown strategy 'last-of-n'"):
        SearchSettings(strategy="last-of-n").validate()
    with pytest.raises(ConfigError, match="unknown strategy spec 'last-of-n:3'"):
        parse_strategies("last-of-n:3", SearchSettings())


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.01)], indirect=True)
def test_a_registered_toy_strategy_runs_from_the_command_line(toy, fault_server, capsys):
    code = main(["run", "--strategy", "last-of-n", "--best-of", "3", "--prompt", "Name a colour.", "--max-tokens",
                 "4", "--seed", "1", "--backend", "openai", "--base-url", fault_server.base_url, "--model",
                 "synthetic", "--tokenizer", "embedded", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["strategy"], out["spec"], out["stats"]) == ("last-of-n", "last-of-n:3", {"asked": 3})
    assert out["answer_is"] == "the last of 3: whatever it scores"
    assert out["timing"]["requests"] == 3
    with pytest.raises(SystemExit) as refused:
        main(["run", "--strategy", "last-of-n", "--chains", "2", "--prompt", "p"])
    assert refused.value.code == 2
    assert "--chains is a setting of --strategy mcmc, not last-of-n" in capsys.readouterr().err


def test_a_registered_toy_strategy_parses_as_an_eval_spec(toy):
    specs = parse_strategies("greedy,last-of-n:5", SearchSettings())
    assert [(s.strategy, s.best_of, s.spec) for s in specs] == [("greedy", 8, "greedy"),
                                                                ("last-of-n", 5, "last-of-n:5")]
    with pytest.raises(ConfigError, match="last-of-n:BEST_OF"):
        parse_strategies("last-of-n:5x2", SearchSettings())


async def test_a_registered_toy_strategy_shows_in_the_dashboard(toy):
    from tests.fault_server import ThreadedFaultServer
    from tui.app import BeamtuiApp
    from tui.panels.population import PopulationPanel

    settings = SearchSettings(strategy="sample", prompt="Name a colour.", best_of=2, max_tokens=4, seed=2)
    with ThreadedFaultServer(FaultConfig()) as server:
        app = BeamtuiApp(settings, openai_settings(server.base_url))
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(0.5)
            await pilot.press("a")  # the strategy cycle: sample, then the toy registered after it
            deadline = 200
            while not (app.state.search.strategy == "last-of-n" and app.state.status == "finished") and deadline:
                await pilot.pause(0.05)
                deadline -= 1
            await pilot.pause(0.3)  # the panels refresh ten times a second
            population = app.query_one(PopulationPanel)
            assert population.border_title == "Toys"
            assert population.query_one("DataTable").row_count == 2
            assert "last-of-n:2" in str(app.query_one("#settings-bar").render())


def test_each_strategy_grows_with_a_budget_as_its_registry_entry_says():
    from engine.eval.budgets import at_budget, expand

    base = SearchSettings()
    grown = {s.strategy: at_budget(base.with_spec(s.strategy), 4) for s in map(base.with_spec, strategy_names())}
    assert (grown["smc"].particles, grown["beam"].beam_width, grown["best-of-n"].best_of) == (32, 16, 32)
    assert (grown["mcmc"].mcmc_steps, grown["mcmc"].chains, grown["vote"].votes) == (20, 2, 32)
    assert (grown["sps"].rollouts, grown["sps"].top_k) == (32, 8)
    assert grown["greedy"] == base.with_spec("greedy")
    families = expand([base.with_spec("greedy"), base.with_spec("smc:4")], [1, 2, 8])
    assert [(item.family, item.budget, item.settings.spec) for item in families] == [
        ("greedy", None, "greedy"), ("smc:4", 1, "smc:4"), ("smc:4", 2, "smc:8"), ("smc:4", 8, "smc:32")]
