"""Fault tolerance against a hostile loopback endpoint: chaos, dead servers, secrets, Ctrl+C, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from engine.backends.factory import open_sampler
from engine.events import RequestFinished, RequestRetried
from engine.search import run_search
from engine.settings import SearchSettings
from tests.conftest import ROOT, free_port, openai_settings, run_cli
from tests.fault_server import FaultConfig

CHAOS = dict(rate_429=0.20, rate_500=0.05, rate_503=0.05, rate_hang=0.03, rate_malformed=0.02, rate_reset=0.02,
             retry_after=0.2, hang_s=30, seed=7)
CAP = 8


def set_rates(server, **rates) -> None:
    for name, value in rates.items():
        setattr(server.config, name, value)


def reset_counts(server) -> None:
    server.stats.injected.clear()
    server.stats.requests = server.stats.peak_in_flight = server.stats.answered = 0


async def test_beam_search_under_chaos_completes_and_accounts_for_every_fault(fault_server):
    limits = openai_settings(fault_server.base_url, max_concurrent=CAP, timeout=1.0, max_retries=8)
    sampler = await open_sampler(limits)  # the probe sees a clean server; the chaos starts now
    set_rates(fault_server, **CHAOS)
    reset_counts(fault_server)
    fault_server.rng.seed(CHAOS["seed"])
    events = []
    settings = SearchSettings(prompt="chaos", beam_width=6, n_per_beam=3, block_tokens=4, max_tokens=24, seed=1)
    result = await run_search(settings, sampler, limits, events.append)
    await sampler.aclose()
    injected = fault_server.stats.injected
    assert result.error is None and result.answer is not None and result.answer.length == 24
    assert sum(injected.values()) > 20 and set(injected) >= {"429", "500", "503"}
    usage = result.usage
    # Every injected fault cost exactly one attempt: a retry, or the last try of a request that failed.
    assert usage["retries"] + usage["failures"] == sum(injected.values())
    assert usage["attempts"] == fault_server.stats.requests
    assert usage["retries"] == sum(isinstance(e, RequestRetried) for e in events)
    assert usage["failures"] == sum(isinstance(e, RequestFinished) and e.error is not None for e in events)
    assert fault_server.stats.peak_in_flight <= CAP and usage["peak_in_flight"] <= CAP


@pytest.mark.parametrize("fault_server", [FaultConfig(**CHAOS, script=("",) * 4)], indirect=True)
def test_gen_under_chaos_puts_every_question_exactly_once_somewhere(fault_server, tmp_path):
    """The start-up probes (3 requests, 4 if one asks twice) meet a clean server; the chaos is for the run."""
    questions = tmp_path / "q.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(80)))
    out = tmp_path / "out.jsonl"
    done = run_cli("gen", "--questions", str(questions), "--out", str(out), "--backend", "openai",
                   "--base-url", fault_server.base_url, "--model", "synthetic", "--tokenizer", "embedded",
                   "--max-concurrent", str(CAP), "--timeout", "1", "--max-retries", "2", "--max-tokens", "4",
                   "--quiet")
    answered = Counter(json.loads(line)["id"] for line in out.read_text().splitlines())
    errors_path = tmp_path / "out.errors.jsonl"
    failed = Counter(json.loads(line)["id"] for line in errors_path.read_text().splitlines()) \
        if errors_path.exists() else Counter()
    assert set(answered.values()) <= {1} and set(failed.values()) <= {1}
    assert not set(answered) & set(failed)
    assert len(answered) + len(failed) == 80
    assert done.returncode == (1 if failed else 0)
    assert f"failures {len(failed)}" in done.stderr
    if failed:
        assert all(json.loads(line)["error"] for line in errors_path.read_text().splitlines())
    assert fault_server.stats.peak_in_flight <= CAP


async def test_logprobs_vanishing_mid_run_end_the_search_clearly_without_bogus_scores(fault_server):
    limits = openai_settings(fault_server.base_url, max_retries=0)
    sampler = await open_sampler(limits)
    set_rates(fault_server, rate_no_logprobs=1.0)
    result = await run_search(SearchSettings(prompt="q", beam_width=2, n_per_beam=2, block_tokens=4, max_tokens=8,
                                             seed=1), sampler, limits)
    await sampler.aclose()
    assert result.error and "no per-token logprobs" in result.error
    assert result.candidates == [] and result.answer is None  # nothing scored from missing numbers


def start_server(*flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.fault_server", "--port", str(port), *flags], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "fault server on" in process.stdout.readline()
    return process, f"http://127.0.0.1:{port}/v1"


def wait_for_requests(base_url: str, count: int, timeout: float = 60.0) -> None:
    """Until the server has seen `count` requests: a slow start-up on a loaded machine must not be killed."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base_url}/stats", timeout=5) as response:
            if json.load(response)["requests"] >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"the server saw fewer than {count} requests in {timeout} s")


def test_a_server_dying_mid_search_ends_it_clearly_and_keeps_the_best_beam():
    server, base_url = start_server("--latency", "0.3")
    command = [sys.executable, "-m", "tui.cli", "run", "--prompt", "q", "--backend", "openai", "--base-url",
               base_url, "--model", "synthetic", "--tokenizer", "embedded", "--beam-width", "2", "--n-per-beam",
               "2", "--block-tokens", "4", "--max-tokens", "400", "--max-retries", "1", "--seed", "1", "--json"]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_requests(base_url, 20)  # past the start-up probes, a few blocks in
    server.kill()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "failed" in err and "connection failed" in err and "Traceback" not in err
    result = json.loads(out)
    assert result["error"].startswith("block ") and result["answer"]["tokens"] >= 4
    assert result["stop_reason"] == "error"


def test_a_server_dying_mid_gen_leaves_everything_completed_on_disk(tmp_path):
    server, base_url = start_server("--latency", "0.2")
    questions = tmp_path / "q.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(300)))
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out", str(out),
               "--backend", "openai", "--base-url", base_url, "--model", "synthetic", "--tokenizer", "embedded",
               "--max-concurrent", "4", "--max-retries", "1", "--quiet"]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while (not out.exists() or len(out.read_text().splitlines()) < 10) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and "Traceback" not in err
    answered = [json.loads(line)["id"] for line in out.read_text().splitlines()]  # every line whole
    failed = [json.loads(line)["id"] for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert len(answered) >= 10 and len(set(answered)) == len(answered)
    assert len(answered) + len(failed) == 300 and not set(answered) & set(failed)


SECRET_OPENAI = "sk-test-SECRET-0123456789"
SECRET_TINKER = "tml-SECRET-9876543210"


@pytest.mark.parametrize("fault_server", [FaultConfig(echo_auth=True)], indirect=True)
def test_api_keys_never_reach_logs_errors_or_files(fault_server, tmp_path):
    env = {"OPENAI_API_KEY": SECRET_OPENAI, "TINKER_API_KEY": SECRET_TINKER}
    backend = ["--backend", "openai", "--base-url", fault_server.base_url, "--model", "synthetic",
               "--tokenizer", "embedded", "--max-retries", "0"]
    questions = tmp_path / "q.txt"
    questions.write_text("one\ntwo\nthree\n")
    outputs = []
    fault_server.inject("", "", "", "400")  # after the probe, one request fails with the key quoted back
    outputs.append(run_cli("run", "--prompt", "q", *backend, "--beam-width", "2", "--n-per-beam", "1",
                           "--block-tokens", "2", "--max-tokens", "4", env=env))
    fault_server.inject("", "", "", "400", "400")
    outputs.append(run_cli("gen", "--questions", str(questions), "--out", str(tmp_path / "out.jsonl"), *backend,
                           "--max-tokens", "2", env=env))
    outputs.append(run_cli("run", "--prompt", "q", "--backend", "tinker", "--model", "m", "--tokenizer",
                           "embedded", "--timeout", "3", env=env))
    text = "".join(done.stdout + done.stderr for done in outputs)
    text += "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
    assert "HTTP 400" in text and "***" in text  # the server did quote it, and we blanked it
    assert SECRET_OPENAI not in text and SECRET_TINKER not in text


async def test_the_tui_save_file_holds_no_key(tmp_path, monkeypatch, fault_server):
    from tui.app import BeamtuiApp

    monkeypatch.setenv("OPENAI_API_KEY", SECRET_OPENAI)
    app = BeamtuiApp(SearchSettings(prompt="q", beam_width=2, n_per_beam=1, block_tokens=2, max_tokens=4, seed=1),
                     openai_settings(fault_server.base_url), save_dir=tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        while app.state.status != "finished":
            await pilot.pause(0.05)
        await pilot.press("s")
        log = "\n".join(line.text for line in app.query_one("LogPanel").lines)
    saved = "".join(path.read_text() for path in tmp_path.glob("*.json"))
    assert saved and SECRET_OPENAI not in saved and SECRET_OPENAI not in log


def interrupt(command: list[str], after: float, wait_for=None) -> subprocess.CompletedProcess:
    # As a terminal's Ctrl-C finds it, even when the suite itself runs with SIGINT ignored (a background job).
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    time.sleep(after)
    while wait_for is not None and not wait_for() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.3)], indirect=True)
def test_ctrl_c_shuts_a_headless_run_down_cleanly(fault_server):
    for backend in (["--backend", "openai", "--base-url", fault_server.base_url, "--model", "synthetic",
                     "--tokenizer", "embedded"], []):
        done = interrupt([sys.executable, "-m", "tui.cli", "run", "--prompt", "Write a long story.", *backend,
                          "--max-tokens", "512", "--block-tokens", "32"], after=3)
        assert done.returncode == 130, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "beamtui: interrupted"
        for noise in ("Traceback", "Event loop is closed", "Task was destroyed", "was never awaited", "Unclosed"):
            assert noise not in done.stderr


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.2)], indirect=True)
def test_ctrl_c_during_gen_keeps_every_completed_line(fault_server, tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(400)))
    out = tmp_path / "out.jsonl"

    def some_done() -> bool:
        return out.exists() and len(out.read_text().splitlines()) >= 20

    done = interrupt([sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out", str(out),
                      "--backend", "openai", "--base-url", fault_server.base_url, "--model", "synthetic",
                      "--tokenizer", "embedded", "--max-concurrent", "4", "--quiet"], after=0.5, wait_for=some_done)
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr
    raw = out.read_text()
    assert raw.endswith("\n")
    records = [json.loads(line) for line in raw.splitlines()]
    assert 20 <= len(records) < 400 and len({r["id"] for r in records}) == len(records)


def test_the_tui_under_chaos_logs_retries_stays_responsive_and_quits_fast(fault_server):
    import asyncio

    from tui.app import BeamtuiApp

    async def scenario():
        app = BeamtuiApp(SearchSettings(prompt="q", beam_width=4, n_per_beam=2, block_tokens=4, max_tokens=400,
                                        seed=1),
                         openai_settings(fault_server.base_url, max_concurrent=CAP, timeout=1.0, max_retries=8))
        async with app.run_test(size=(160, 48)) as pilot:
            while app.state.status != "running":
                await pilot.pause(0.05)
            set_rates(fault_server, **CHAOS | {"latency": 0.05})
            while app.state.retries < 5:
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            log = "\n".join(line.text for line in app.query_one("LogPanel").lines)
            assert "retried after attempt" in log
            started = time.perf_counter()
            await pilot.press("plus")
            assert app.search.beam_width == 5 and time.perf_counter() - started < 1.0
            pressed = time.perf_counter()
            await pilot.press("q")
            while app.is_running:
                await pilot.pause(0.02)
            return time.perf_counter() - pressed

    assert asyncio.run(scenario()) < 1.0


BAD_FLAGS = [
    (["--beam-width", "0"], "beam-width must be an integer >= 1"),
    (["--n-per-beam", "0"], "n-per-beam must be an integer >= 1"),
    (["--block-tokens", "0"], "block-tokens must be an integer >= 1"),
    (["--max-tokens", "0"], "max-tokens must be an integer >= 1"),
    (["--block-tokens", "16", "--max-tokens", "8"], "cannot be larger than max-tokens"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--backend", "nope"], "invalid choice: 'nope'"),
    (["--backend", "tinker", "--model", "m"], "needs TINKER_API_KEY"),
    (["--backend", "openai", "--base-url", "https://api.openai.com/v1", "--model", "m"], "needs OPENAI_API_KEY"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--tokenizer", "embedded",
      "--max-retries", "0"], "cannot reach"),
    (["--backend", "openai", "--base-url", "127.0.0.1:8000", "--model", "m"], "malformed base URL"),
]


@pytest.mark.parametrize("command", ["run", "bench", "tui"])
@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=[m for _, m in BAD_FLAGS])
def test_every_bad_search_flag_is_exit_2_on_every_command(command, flags, message):
    argv = {"run": ["run", "--prompt", "x"], "bench": ["bench", "--widths", "1"], "tui": []}[command]
    done = run_cli(*argv, *flags, env={"OPENAI_API_KEY": "", "TINKER_API_KEY": ""}, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_invalid_toml_and_bad_regex_are_exit_2(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("beam-width = [\n")
    done = run_cli("--config", str(config))
    assert done.returncode == 2 and "invalid TOML" in done.stderr
    questions = tmp_path / "q.txt"
    questions.write_text("hi\n")
    done = run_cli("gen", "--questions", str(questions), "--out", str(tmp_path / "o.jsonl"), "--parse-regex", "[")
    assert done.returncode == 2 and "invalid --parse-regex" in done.stderr


def test_the_fault_server_can_proxy_a_real_llama_server(llama_server, tmp_path):
    """The same faults in front of llama-cpp-python's own server: real tokens, injected trouble."""
    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "tests.fault_server", "--port", str(port), "--upstream",
                              llama_server, "--rate-500", "0.3", "--seed", "3"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "fault server on" in proxy.stdout.readline()
        done = run_cli("run", "--prompt", "Name a fruit.", "--backend", "openai", "--base-url",
                       f"http://127.0.0.1:{port}/v1", "--model", "smollm2", "--tokenizer", "embedded",
                       "--beam-width", "2", "--n-per-beam", "2", "--block-tokens", "4", "--max-tokens", "8",
                       "--seed", "2", "--json")
    finally:
        proxy.terminate()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"]["text"] and result["usage"]["retries"] > 0
