"""`beamtui eval`: graders on real-looking answers, the statistics against known values, problem files as
users download them, resumable output, and bad input refused in one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from engine.backends.tokenizers import load_tokenizer
from engine.eval.grading import Grader, last_number, parse_grader
from engine.eval.problems import Problem, read_problems
from engine.eval.stats import mcnemar_exact_p, pass_at_k, pass_at_ks, wilson_interval
from engine.eval.summary import EvalTally, summarize
from tests.conftest import ROOT, run_cli
from tests.fault_server import FaultConfig, ThreadedFaultServer

FIXTURES = ROOT / "tests" / "fixtures" / "problems"


def problem(answer: str, choices: tuple[str, ...] = ()) -> Problem:
    return Problem("p", "q", answer, choices)


@pytest.mark.parametrize(("grader", "text", "gold", "extracted", "correct"), [
    ("math", "Adding them gives $\\boxed{\\frac{1}{2}}$.", "0.5", "\\frac{1}{2}", True),
    ("math", "So the answer is $\\boxed{0.5}$", "\\frac{1}{2}", "\\frac{1}{2}", True),  # as math-verify reads it
    ("math", "The result is \\boxed{\\frac{2}{3}}", "\\frac{1}{2}", "\\frac{2}{3}", False),
    ("math", "I am not sure.", "4", None, False),
    ("numeric", "So in total it sold 1,000 pencils.", "1000", "1000", True),
    ("numeric", "It costs $1,250.00 per week, i.e. 5,000 dollars.", "5000", "5000", True),
    ("numeric", "9 plus 4 is 13.", "13", "13", True),
    ("numeric", "The temperature fell to -3 degrees.", "-3", "-3", True),
    ("numeric", "I cannot tell.", "13", None, False),
    ("numeric", "9 plus 4 is 12.", "13", "12", False),
    ("choice", "The red planet is Mars, so the answer is (B).", "B", "B", True),
    ("choice", "Answer: C", "B", "C", False),
    ("choice", "none of these", "B", None, False),
    ("exact", "Paris.", "paris", "Paris.", True),
    ("exact", "The answer is: Lyon", "Paris", "Lyon", False),
])
def test_graders_read_real_looking_answers(grader, text, gold, extracted, correct):
    grade = Grader(grader).grade(text, problem(gold, ("Venus", "Mars", "Jupiter", "Saturn")))
    assert (grade.extracted, grade.correct) == (extracted, correct)


def test_the_regex_grader_keeps_its_group_and_no_match_is_no_answer():
    grader = parse_grader(r"regex:ANSWER=(\w+)", "generic", "x")
    assert grader.grade("work... ANSWER=blue", problem("blue")).correct
    assert grader.grade("no marker here", problem("blue")).extracted is None


def test_auto_grader_follows_the_file_shape():
    assert parse_grader("auto", "gsm8k", "72").kind == "numeric"
    assert parse_grader("auto", "math", "\\frac{1}{2}").kind == "math"
    assert parse_grader("auto", "choice", "B").kind == "choice"
    assert parse_grader("auto", "generic", "13").kind == "numeric"
    assert parse_grader("auto", "generic", "Paris").kind == "exact"
    assert last_number("between 1,000 and 2,500 units") == "2500"


def test_wilson_interval_and_exact_mcnemar_against_known_values():
    # Wilson (1927) 95% interval for 8/10, as in Newcombe (1998) table I: 0.490 to 0.943.
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 0) == (0.0, 1.0)
    assert mcnemar_exact_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # binomial(12, 1/2), k <= 2
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32) and mcnemar_exact_p(3, 3) == 1.0


def test_a_strategy_planted_correct_beats_one_planted_wrong_with_the_expected_p_value():
    records = []
    for i in range(12):
        base = {"id": f"p{i}", "sample": 0, "tokens": 10, "requests": 1, "wall_s": 0.1, "extracted": "1"}
        records.append(base | {"strategy": "wrong", "correct": i == 0})  # right once, on a problem both get
        records.append(base | {"strategy": "right", "correct": True, "tokens": 30})
    wrong, right = summarize(records, ["wrong", "right"])
    assert (wrong.correct, right.correct, right.n) == (1, 12, 12)
    assert right.diff_vs_first == pytest.approx(11 / 12)
    assert right.mcnemar_p == pytest.approx(2 / 2**11)  # 11 discordant pairs, all one way
    assert right.tokens_per_correct == 30 and wrong.tokens_per_correct == 120


def test_a_redone_search_replaces_its_earlier_record_in_the_live_tally():
    def record(pid, spec, correct, tokens=10):
        return {"id": pid, "sample": 0, "strategy": spec, "correct": correct, "tokens": tokens, "requests": 1,
                "wall_s": 0.1, "extracted": "1" if correct else None}
    first = [record(f"p{i}", "a", i % 2 == 0) for i in range(6)] + [record(f"p{i}", "b", True) for i in range(6)]
    redone = [record("p0", "a", False, tokens=50), record("p3", "b", False, tokens=20)]  # a rerun's results
    tally = EvalTally(["a", "b"])
    for item in first + redone:
        tally.add(item)
    latest = {(r["id"], r["strategy"]): r for r in first + redone}
    assert tally.rows() == summarize(latest.values(), ["a", "b"])
    a, b = tally.rows()
    assert (a.correct, a.no_answer, a.mean_tokens, b.correct, tally.searches) == (2, 4, 100 / 6, 5, 12)
    assert b.diff_vs_first == pytest.approx(3 / 6)  # b alone right on p0, p1, p5; a never alone
    assert b.mcnemar_p == pytest.approx(mcnemar_exact_p(0, 3))


def test_problem_files_as_users_download_them_are_detected():
    gsm8k = read_problems(FIXTURES / "gsm8k.jsonl")
    assert gsm8k.shape == "gsm8k" and [p.answer for p in gsm8k] == ["72", "5000"]
    math500 = read_problems(FIXTURES / "math500.jsonl")
    assert math500.shape == "math" and next(iter(math500)).answer == "\\frac{1}{2}"
    assert next(iter(math500)).id == "test/prealgebra/1.json"
    choice = read_problems(FIXTURES / "choice.jsonl")
    assert choice.shape == "choice" and next(iter(choice)).choices[1] == "Mars"
    shipped = read_problems(ROOT / "assets" / "arithmetic.jsonl")
    assert shipped.shape == "generic" and len(shipped) == 200


def scripted_server(text: str, latency: float = 0.0) -> ThreadedFaultServer:
    return ThreadedFaultServer(FaultConfig(answer_tokens=tuple(load_tokenizer("embedded").encode(text)),
                                           latency=latency))


ENDPOINT = ("--backend", "openai", "--model", "synthetic", "--tokenizer", "embedded")


def test_eval_grades_every_strategy_and_reports_the_table(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"q{i}", "answer": "42" if i < 3 else "7"})
                                + "\n" for i in range(6)))
    out = tmp_path / "out.jsonl"
    with scripted_server(" The answer is 42.") as server:
        done = run_cli("eval", "--problems", str(problems), "--strategies", "greedy,beam:2x2,smc:3",
                       "--out", str(out), "--json", "--quiet", "--max-tokens", "12", "--block-tokens", "4",
                       "--temperature", "1", "--base-url", server.base_url, *ENDPOINT)
    assert done.returncode == 0, done.stderr
    assert "6 problems, generic" in done.stderr
    summary = json.loads(done.stdout)
    rows = {row["strategy"]: row for row in summary["strategies"]}
    assert list(rows) == ["greedy", "beam:2x2", "smc:3"]
    for row in rows.values():
        assert (row["n"], row["correct"], row["no_answer"]) == (6, 3, 0)
        assert row["mcnemar_p"] in (None, 1.0) and row["mean_tokens"] > 0 and row["mean_requests"] >= 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    results = [line for line in lines if "id" in line]
    assert len(results) == 18 and all(line["extracted"] == "42" for line in results)
    assert {"answer", "correct", "tokens", "requests", "wall_s", "settings"} <= results[0].keys()
    assert [line["timing"] for line in lines if "timing" in line] == ["greedy", "beam:2x2", "smc:3"]
    assert rows["greedy"]["x_time"] == 1.0 and rows["smc:3"]["x_tokens"] > 1 and rows["smc:3"]["x_time"] > 0


def test_a_problem_too_long_for_the_server_is_one_unanswered_search_and_the_eval_goes_on(tmp_path):
    """vLLM's max_model_len says how long a sequence may be: a problem whose prompt and answer would not fit is
    refused before any request, recorded with the reason, and the other problems are answered."""
    problems = tmp_path / "p.jsonl"
    long_question = "why " * 170  # ~200 tokens with the template: with 8 to answer, more than the server's 200
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": long_question if i == 1 else f"q{i}",
                                            "answer": "42"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    with ThreadedFaultServer(FaultConfig(answer_tokens=tuple(load_tokenizer("embedded").encode(" 42")),
                                         max_model_len=200)) as server:
        done = run_cli("eval", "--problems", str(problems), "--strategies", "greedy", "--out", str(out), "--json",
                       "--quiet", "--max-tokens", "8", "--base-url", server.base_url, *ENDPOINT)
        requests = server.stats.requests
    assert done.returncode == 0, done.stderr
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines()) if "id" in r}
    assert records["p1"]["requests"] == 0 and not records["p1"]["correct"]
    assert "the openai model's 200 tokens per sequence" in records["p1"]["error"]
    assert records["p0"]["correct"] and records["p2"]["correct"]
    assert requests >= 2  # the start-up probes and the two problems that fit; none for the one that did not


@pytest.mark.parametrize("fault_server", [FaultConfig(max_model_len=64)], indirect=True)
def test_a_run_longer_than_the_server_s_max_model_len_is_refused_before_any_request(fault_server):
    done = run_cli("run", "--prompt", "hi", "--max-tokens", "100", "--base-url", fault_server.base_url, *ENDPOINT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "exceed the openai model's 64 tokens per sequence; use --max-tokens" in done.stderr


def test_eval_resumes_after_kill_9_with_every_search_exactly_once(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"question": f"question {i}", "answer": "42"}) + "\n"
                                for i in range(20)))
    out = tmp_path / "out.jsonl"
    with scripted_server(" 42", latency=0.2) as server:
        command = [sys.executable, "-m", "tui.cli", "eval", "--problems", str(problems), "--strategies",
                   "greedy,best-of-n:2", "--out", str(out), "--quiet", "--max-tokens", "4", "--max-concurrent",
                   "2", "--base-url", server.base_url, *ENDPOINT]
        run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while (not out.exists() or len(out.read_text().splitlines()) < 6) and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait()
        first = sum("id" in json.loads(line) for line in out.read_text().splitlines())
        assert 6 <= first < 40
        again = subprocess.run(command + ["--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    keys = [(r["id"], r["strategy"]) for r in map(json.loads, out.read_text().splitlines()) if "id" in r]
    assert len(keys) == len(set(keys)) == 40
    assert all(row["n"] == 20 and row["correct"] == 20 for row in json.loads(again.stdout)["strategies"])


def test_after_ctrl_c_the_resumed_eval_times_every_search_and_starts_its_bars_where_the_output_stands(tmp_path):
    """The interrupted strategy's finished searches get a timing line at Ctrl+C, so the resumed summary's time per
    search covers all of each strategy's searches, not just those of the last run."""
    from engine.eval.plan import plan_eval

    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"question": f"question {i}", "answer": "42"}) + "\n" for i in range(12)))
    out = tmp_path / "out.jsonl"
    with scripted_server(" 42", latency=0.2) as server:
        flags = ["--problems", str(problems), "--strategies", "greedy,best-of-n:2", "--out", str(out),
                 "--max-tokens", "4", "--max-concurrent", "2", "--base-url", server.base_url, *ENDPOINT]
        run = subprocess.Popen([sys.executable, "-m", "tui.cli", "eval", "--quiet", *flags], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while (not out.exists() or sum('"best-of-n:2"' in line for line in out.read_text().splitlines()) < 3) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 130
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        held = {spec: sum(r.get("strategy") == spec for r in lines) for spec in ("greedy", "best-of-n:2")}
        timed = {spec: sum(r["searches"] for r in lines if r.get("timing") == spec) for spec in held}
        assert held["greedy"] == 12 and 3 <= held["best-of-n:2"] < 12 and timed == held
        plan = plan_eval({"max_tokens": 4, "backend": "openai", "base_url": server.base_url, "model": "synthetic",
                          "tokenizer": "embedded"}, problems=problems, out=out, strategies="greedy,best-of-n:2")
        assert plan.done_counts() == held  # where the resumed run's progress bars start
        again = run_cli("eval", "--json", "--quiet", *flags, timeout=120)
    assert again.returncode == 0, again.stderr
    rows = {row["strategy"]: row for row in json.loads(again.stdout)["strategies"]}
    assert all(row["n"] == 12 and row["timed_searches"] == 12 for row in rows.values())


def test_a_small_eval_on_the_embedded_model(tmp_path):
    out = tmp_path / "out.jsonl"
    done = run_cli("eval", "--problems", str(ROOT / "assets" / "arithmetic.jsonl"), "--limit", "2",
                   "--strategies", "greedy,beam:2x2", "--max-tokens", "8", "--block-tokens", "4", "--out", str(out),
                   "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["strategies"]
    assert [row["n"] for row in rows] == [2, 2] and rows[1]["mean_requests"] >= 2


def test_budget_curves_on_the_embedded_model_with_a_chart_file(tmp_path):
    """Each family at each budget, its sizes grown as the registry says; greedy once; the curves in the JSON and
    the chart as a real PNG and SVG."""
    out, png = tmp_path / "out.jsonl", tmp_path / "curves.png"
    args = ["eval", "--problems", str(ROOT / "assets" / "arithmetic.jsonl"), "--limit", "2", "--strategies",
            "greedy,best-of-n:2,sps:2x2", "--budgets", "1,2", "--max-tokens", "6", "--block-tokens", "3",
            "--out", str(out), "--json", "--quiet"]
    done = run_cli(*args, "--plot", str(png))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [row["strategy"] for row in summary["strategies"]] == ["greedy", "best-of-n:2", "best-of-n:4",
                                                                 "sps:2x2", "sps:2x4"]
    curves = {curve["strategy"]: curve["points"] for curve in summary["budget_curves"]}
    assert [p["budget"] for p in curves["greedy"]] == [None]
    assert [p["budget"] for p in curves["sps:2x2"]] == [1, 2]
    for points in curves.values():
        assert all(p["ci_low"] <= p["accuracy"] <= p["ci_high"] and p["mean_tokens"] > 0 for p in points)
    assert curves["best-of-n:2"][1]["mean_tokens"] > curves["best-of-n:2"][0]["mean_tokens"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    svg = tmp_path / "curves.svg"
    again = run_cli(*args, "--plot", str(svg))  # resumed: nothing to run, the same curves drawn from the output
    assert again.returncode == 0 and json.loads(again.stdout)["budget_curves"] == summary["budget_curves"]
    assert "<svg" in svg.read_text() and "sps:2x2" in svg.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--strategies", "greedy,bogus:3"], "unknown strategy spec 'bogus:3'"),
    (["--grader", "regex:no group"], "exactly one group"),
    (["--grader", "fuzzy"], "--grader must be one of"),
    (["--prompt-template", "no placeholder"], "must contain {question}"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--budgets", "0,2"], "--budgets must be at most 8 numbers from 1 to 64"),
    (["--budgets", "1,two"], "--budgets must be comma-separated whole numbers"),
    (["--strategies", "smc:512", "--budgets", "1,4"], "smc:512 at budget 4: particles must be at most 1,024"),
    (["--plot", "chart.pdf"], "--plot writes .png or .svg files"),
    (["--plot", "/nonexistent/chart.png"], "does not exist"),
])
def test_bad_eval_input_is_one_line_and_exit_2(tmp_path, args, message):
    done = run_cli("eval", "--problems", str(FIXTURES / "gsm8k.jsonl"), "--out", str(tmp_path / "o.jsonl"), *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("content", "message"), [
    ("", "has no problems"),
    ('{"question": "What is 2 plus 2?"}\n', "no answer"),
    ("not json\n", "not a JSON object"),
])
def test_bad_problem_files_are_one_line_and_exit_2(tmp_path, content, message):
    problems = tmp_path / "p.jsonl"
    problems.write_text(content)
    done = run_cli("eval", "--problems", str(problems), "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


async def test_the_eval_dashboard_fills_the_table_and_follows_one_search_at_a_time(tmp_path):
    from engine.eval.plan import plan_eval
    from tui.eval_app import EvalApp
    from tui.panels.eval_table import EvalTablePanel
    from tui.panels.population import PopulationPanel

    problems = tmp_path / "problems.jsonl"
    rows = ({"id": f"p{i}", "question": f"question {i}", "answer": "42" if i % 2 else "7"} for i in range(6))
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with scripted_server(" 42", latency=0.05) as server:
        values = {"backend": "openai", "base_url": server.base_url, "model": "synthetic", "tokenizer": "embedded",
                  "max_concurrent": 4, "block_tokens": 4, "max_tokens": 8, "temperature": 1.0, "seed": 1}
        plan = plan_eval(values, problems=problems, out=tmp_path / "out.jsonl", strategies="greedy,beam:2x2",
                         grader="numeric", template="{question}", budgets="1,2")
        app = EvalApp(plan)
        async with app.run_test(size=(160, 48)) as pilot:
            deadline = time.monotonic() + 60
            while not app.status.startswith("finished") and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            table = app.query_one(EvalTablePanel)
            assert app.status.startswith("finished") and table.table.row_count == 3  # greedy, beam at 1 and 2
            assert "18 of 18 searches" in table.border_subtitle
            assert [(row.n, row.correct) for row in app.rows] == [(6, 3), (6, 3), (6, 3)]
            assert all(row.seconds_per_search is not None for row in app.rows)  # timed live, not only at the end
            curves = {curve.family: curve for curve in app.curves}
            assert [p.budget for p in curves["beam:2x2"].points] == [1, 2]
            plot = app.query_one("#eval-curves-plot")
            plotted = str(plot.render())
            assert "mean tokens per search" in plotted and "beam:2x2" in plotted
            assert app.state is not None and app.state.finished
            assert app.query_one(PopulationPanel).query_one("DataTable").row_count >= 1
            await pilot.press("q")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sum("id" in line for line in lines) == 18 and sum("timing" in line for line in lines) == 3


def test_eval_tui_refuses_quiet_in_one_line(tmp_path):
    done = run_cli("eval", "--problems", str(FIXTURES / "gsm8k.jsonl"), "--out", str(tmp_path / "o.jsonl"),
                   "--tui", "--quiet")
    assert done.returncode == 2 and "give one" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_pass_at_k_is_the_unbiased_estimator_against_hand_computed_values():
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # 1 - C(3,3)/C(5,3)
    assert pass_at_k(4, 0, 4) == 0 and pass_at_k(4, 4, 1) == 1 and pass_at_k(4, 1, 1) == 0.25
    assert pass_at_ks(4) == [1, 2, 4] and pass_at_ks(6) == [1, 2, 4, 6] and pass_at_ks(1) == [1]
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_the_summary_reports_pass_at_k_over_problems():
    records = [{"id": pid, "strategy": "s", "sample": k, "correct": right, "extracted": "1", "tokens": 1,
                "requests": 1, "wall_s": 0.1}
               for pid, rights in (("a", (1, 0, 0, 0)), ("b", (1, 1, 1, 1))) for k, right in enumerate(rights)]
    (row,) = summarize(records, ["s"], samples=4)
    assert row.pass_at == pytest.approx({1: (0.25 + 1) / 2, 2: (0.5 + 1) / 2, 4: 1.0})
    assert row.as_dict()["pass_at"] == {"pass@1": 0.625, "pass@2": 0.75, "pass@4": 1.0}


def test_cost_multiples_are_of_the_first_strategy_and_time_is_each_timed_alone():
    records = [{"id": f"p{i}", "strategy": spec, "sample": 0, "correct": True, "extracted": "1", "tokens": tokens,
                "requests": requests, "wall_s": 9.0} for i in range(4)
               for spec, tokens, requests in (("greedy", 10, 1), ("smc:8", 41, 8))]
    records += [{"timing": "greedy", "searches": 4, "wall_s": 2.0, "max_concurrent": 8},
                {"timing": "smc:8", "searches": 4, "wall_s": 4.6, "max_concurrent": 8}]
    greedy, smc = summarize(records, ["greedy", "smc:8"])
    assert (greedy.x_tokens, greedy.x_requests, greedy.x_time) == (1.0, 1.0, 1.0)
    assert (smc.x_tokens, smc.x_requests, smc.x_time) == pytest.approx((4.1, 8.0, 2.3))


def test_vote_groups_answers_and_a_tie_goes_to_the_higher_summed_target():
    from engine.strategies.vote import final_line, tally

    groups = tally(["4", "5", "4", None, "5"], [-1.0, -2.0, -3.0, 0.0, -0.5])
    assert groups == [("5", 2, -2.5), ("4", 2, -4.0)]  # two votes each: 5's members are likelier together
    assert tally(["4", "4", "5"], [-9.0, -9.0, -0.1])[0][0] == "4"  # more votes beat a likelier single answer
    assert final_line("Let me think.\n\n  The answer is 42. \n") == "the answer is 42"
    assert final_line("  \n") is None


def test_vote_answers_with_the_largest_group_on_a_real_search():
    import asyncio

    from engine.search import run_search
    from engine.settings import BackendSettings, SearchSettings
    from tests.synthetic import MarkovSampler

    settings = SearchSettings(prompt="colours", strategy="vote", votes=12, max_tokens=2, alpha=1.0, seed=4)
    last_word = lambda text: text.split()[-1]  # noqa: E731
    result = asyncio.run(run_search(settings, MarkovSampler(), BackendSettings(max_retries=0),
                                    answer_key=last_word))
    groups = result.stats["groups"]
    assert result.stats["grouped_by"] == "the grader's extracted answer" and sum(g["votes"] for g in groups) == 12
    assert last_word(result.answer.text) == groups[0]["answer"]
    assert groups[0]["votes"] == max(g["votes"] for g in groups)


def test_resuming_into_an_output_made_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    with scripted_server(" 42") as server:
        common = ["eval", "--problems", str(ROOT / "assets" / "arithmetic.jsonl"), "--limit", "2", "--strategies",
                  "greedy", "--out", str(out), "--quiet", "--base-url", server.base_url, *ENDPOINT]
        assert run_cli(*common, "--max-tokens", "4", "--block-tokens", "4").returncode == 0
        again = run_cli(*common, "--max-tokens", "6", "--block-tokens", "4")
        same = run_cli(*common, "--max-tokens", "4", "--block-tokens", "4", "--json")
    assert again.returncode == 2
    assert again.stderr == (f"beamtui: error: {out} holds results made with other settings (max_tokens 4 there, 6 "
                            "now); give another --out, or the same settings to resume it\n")
    assert same.returncode == 0 and json.loads(same.stdout)["strategies"][0]["n"] == 2


def test_the_summary_fits_80_columns_whole():
    from rich.console import Console

    from tui.commands.eval import summary_tables

    records = [{"id": f"p{i}", "strategy": spec, "sample": k, "correct": (i + k) % 2 == 0, "extracted": "1",
                "tokens": 10, "requests": 2, "wall_s": 0.5} for i in range(5) for k in range(4)
               for spec in ("greedy", "vote:8", "smc:8:best", "mcmc:2x5")]
    rows = summarize(records, ["greedy", "vote:8", "smc:8:best", "mcmc:2x5"], samples=4)
    console = Console(width=80, record=True, color_system=None)
    for table in summary_tables(rows, "title", console.width):
        console.print(table)
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for needle in ("smc:8:best", "pass@4", "×time", "accuracy (95% CI)"):
        assert needle in text
