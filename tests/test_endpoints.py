"""Several endpoints behind one cap: balancing, caps, health, a replica killed mid-run, and the start-up check
that they serve one model. Loopback fault servers only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack

import pytest

from engine.backends.endpoints import odd_ones_out
from engine.gen.generator import question_id
from engine.scoring import endpoint_score
from tests.conftest import ROOT, run_cli
from tests.fault_server import FaultConfig, InFlightGroup, ThreadedFaultServer
from tests.test_gen import lines, write_questions

SYNTHETIC = ["--backend", "openai", "--model", "synthetic", "--tokenizer", "embedded"]


def servers(stack: ExitStack, *configs: FaultConfig) -> list[ThreadedFaultServer]:
    threaded = [ThreadedFaultServer(config) for config in configs]
    for server in threaded:
        stack.enter_context(server)
    return threaded


def urls(threaded) -> list[str]:
    return [arg for server in threaded for arg in ("--base-url", server.server.base_url)]


def test_traffic_follows_capacity_and_both_caps_hold(tmp_path):
    group = InFlightGroup()
    with ExitStack() as stack:
        fast, middle, slow = servers(stack, *(FaultConfig(latency=latency, group=group)
                                              for latency in (0.05, 0.1, 0.2)))
        questions = write_questions(tmp_path / "q.txt", 280)
        done = run_cli("gen", "--questions", str(questions), "--out", str(tmp_path / "out.jsonl"), *SYNTHETIC,
                       *urls([fast, middle, slow]), "--max-concurrent", "10", "--endpoint-max-concurrent", "4",
                       "--max-tokens", "4", "--quiet", timeout=120)
        assert done.returncode == 0, done.stderr
        counts = [s.server.stats.requests for s in (fast, middle, slow)]
        peaks = [s.server.stats.peak_in_flight for s in (fast, middle, slow)]
    assert len(lines(tmp_path / "out.jsonl")) == 280
    assert max(peaks) == 4 and group.peak <= 10  # the per-endpoint cap, and the global one across servers
    # Capacity: 4 slots over 0.05, 0.1 and 0.2 s is 80, 40 and 20 requests/s, shares 4:2:1 when all are full.
    assert counts[0] > counts[1] > counts[2]
    assert 2.0 <= counts[0] / counts[2] <= 8.0, counts


def test_a_replica_killed_mid_gen_loses_nothing(tmp_path):
    with ExitStack() as stack:
        threaded = servers(stack, *(FaultConfig(latency=0.05) for _ in range(3)))
        questions = write_questions(tmp_path / "q.txt", 200)
        out = tmp_path / "out.jsonl"
        command = [sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out", str(out),
                   *SYNTHETIC, *urls(threaded), "--max-concurrent", "6", "--max-tokens", "4", "--quiet"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(out.read_text().splitlines() if out.exists() else []) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        threaded[1].kill()
        answered_before_kill = threaded[1].server.stats.answered
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "failures 0" in stderr
    ids = Counter(record["id"] for record in lines(out))
    assert set(ids) == {question_id(f"What is {i} plus {i}?") for i in range(200)} and set(ids.values()) == {1}
    assert answered_before_kill > 0


def test_a_replica_killed_mid_search_and_the_search_completes_on_the_others():
    with ExitStack() as stack:
        threaded = servers(stack, *(FaultConfig(latency=0.1) for _ in range(3)))
        command = [sys.executable, "-m", "tui.cli", "run", "--prompt", "hi", "--json", *SYNTHETIC, *urls(threaded),
                   "--max-tokens", "96", "--block-tokens", "8", "--beam-width", "4", "--n-per-beam", "2", "--seed", "1"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Four requests a round over three endpoints: each has one in every round. The probes are about 5 an
        # endpoint, so 30 answers in all is a few rounds into the search.
        deadline = time.monotonic() + 60
        while sum(s.server.stats.answered for s in threaded) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the search ended before the kill"
        threaded[0].kill()
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    result = json.loads(stdout)
    usage = result["usage"]
    assert result["answer"]["tokens"] == 96 and usage["failures"] == 0
    killed, *alive = (usage["endpoints"].get(s.server.base_url, {}) for s in threaded)
    assert all(e["requests"] > 0 for e in alive)
    assert killed.get("requests", 0) < min(e["requests"] for e in alive)  # it was out for the later blocks
    described = {e["base_url"]: e for e in result["endpoints"]}  # what each supports, and its health
    assert list(described) == [s.server.base_url for s in threaded]
    assert all(e["token_prompts"] and e["honours_n"] and e["streams"] and e["logprobs"] == "raw"
               for e in described.values())
    assert described[threaded[0].server.base_url]["failures"] >= 1


def test_what_each_endpoint_supports_is_probed_and_reported():
    with ExitStack() as stack:
        threaded = servers(stack, FaultConfig(), FaultConfig(streams=False, rate_ignore_n=1.0))
        done = run_cli("run", "--prompt", "hi", "--json", *SYNTHETIC, *urls(threaded), "--max-tokens", "8",
                       timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)["endpoints"]
    assert (first["streams"], first["honours_n"]) == (True, True)
    assert (second["streams"], second["honours_n"]) == (False, False)


def test_an_endpoint_serving_another_model_is_named_at_start_up():
    with ExitStack() as stack:
        threaded = servers(stack, FaultConfig(), FaultConfig(), FaultConfig(model="another"))
        done = run_cli("run", "--prompt", "hi", *SYNTHETIC, *urls(threaded), "--max-tokens", "8", timeout=60)
        odd = threaded[2].server.base_url
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"{odd} serves another model or tokenizer" in done.stderr


def test_an_endpoint_with_processed_logprobs_among_raw_ones_is_named_at_start_up():
    with ExitStack() as stack:
        threaded = servers(stack, FaultConfig(), FaultConfig(logprobs_mode="processed"), FaultConfig())
        done = run_cli("run", "--prompt", "hi", *SYNTHETIC, *urls(threaded), "--max-tokens", "8", timeout=60)
        odd = threaded[1].server.base_url
    assert done.returncode == 2 and f"{odd} returns processed logprobs" in done.stderr


def test_the_odd_one_out_and_the_endpoint_score():
    same = lambda a, b: a[0] == b[0]  # noqa: E731
    assert odd_ones_out(["a1", "a2", "b"], same) == ["b"]
    assert odd_ones_out(["a", "b"], same) == ["a", "b"]  # two that disagree: either may be the odd one
    assert odd_ones_out(["a1", "a2"], same) == []
    # Least outstanding, weighted by latency: an idle slow endpoint loses to a fast one with a short queue...
    assert endpoint_score(1, 0.1, 0) < endpoint_score(0, 0.4, 0)
    # ...and one that has just failed is avoided while another answers.
    assert endpoint_score(0, 0.1, 0) < endpoint_score(0, 0.1, 1)


@pytest.mark.parametrize(("argv", "message"), [
    (["--base-url", "http://127.0.0.1:9/v1", "--base-url", "http://127.0.0.1:9/v1"], "names an endpoint twice"),
    (["--base-url", "http://127.0.0.1:9/v1", "--endpoint-max-concurrent", "0"],
     "endpoint-max-concurrent must be an integer >= 1"),
    (["--base-url", "http://127.0.0.1:9/v1", "--base-url", "ftp://x"], "ftp://x"),
    (["--base-url", "http://127.0.0.1:9/v1", "--tinker-clients", "2"], "--tinker-clients is for the tinker backend"),
])
def test_bad_endpoint_flags_exit_2_with_one_line(argv, message):
    done = run_cli("run", "--prompt", "hi", *SYNTHETIC, *argv, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_base_urls_in_the_config_file(tmp_path):
    from engine.settings import backend_settings
    from tui.options import read_config

    config = tmp_path / "beamtui.toml"
    config.write_text('backend = "openai"\nmodel = "m"\nbase-urls = ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]\n'
                      "endpoint-max-concurrent = 8\n")
    settings = backend_settings(read_config(str(config)))
    assert settings.base_urls == ("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1")
    assert settings.endpoint_max_concurrent == 8


async def test_the_throughput_panel_has_a_line_per_endpoint():
    from tests.conftest import openai_settings
    from tests.test_tui import SIZE, SMALL, wait_for
    from tui.app import BeamtuiApp
    from tui.panels.throughput import ThroughputPanel

    with ExitStack() as stack:
        first, second = servers(stack, FaultConfig(latency=0.02), FaultConfig(latency=0.02))
        backend = openai_settings(first.server.base_url, more_base_urls=(second.server.base_url,))
        app = BeamtuiApp(SMALL, backend)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.status == "finished")
            await pilot.pause(0.3)
            lines = {url: line.text for url, line in app.query_one(ThroughputPanel).endpoint_lines.items()}
    assert set(lines) == {first.server.base_url, second.server.base_url}
    assert all("req/s" in text and "answering" in text for text in lines.values()), lines


def test_an_endpoint_that_keeps_failing_rests_then_gets_one_trial_request():
    from types import SimpleNamespace

    from engine.backends.endpoints import EndpointPool

    now = [0.0]
    pool = EndpointPool([SimpleNamespace(base_url="http://a/v1"), SimpleNamespace(base_url="http://b/v1")],
                        endpoint_max_concurrent=None, timeout=60, max_retries=5, max_concurrent=8,
                        clock=lambda: now[0])
    failing, healthy = pool.endpoints
    for _ in range(3):
        pool._failed(failing)
    assert failing.health(now[0]) == "resting" and pool._choose() is healthy
    now[0] = 2.5  # the first rest is 2 s
    assert failing.health(now[0]) == "trial"
    healthy.outstanding = 5  # the idle trial endpoint is now the better choice, for one request at a time
    assert pool._choose() is failing
    failing.outstanding = 1
    assert pool._choose() is healthy
    pool._failed(failing)  # the trial failed: a longer rest
    assert failing.resting_until == now[0] + 4.0
    now[0] = 7.0
    pool._succeeded(failing, 0.1, [])
    assert failing.health(now[0]) == "up" and failing.failed_in_a_row == 0


async def test_a_pool_of_endpoints_answers_every_capability_the_engine_reads():
    """Every member of the Sampler protocol, read on a pool of two endpoints as the engine reads it (its chat
    template was once a property called as a method: a TypeError the day it was read)."""
    from engine.backends.factory import open_sampler
    from engine.sampler import Sampler
    from tests.conftest import openai_settings

    with ThreadedFaultServer(FaultConfig()) as one, ThreadedFaultServer(FaultConfig()) as two:
        settings = openai_settings(one.base_url, more_base_urls=(two.base_url,))
        pool = await open_sampler(settings)
        try:
            assert isinstance(pool, Sampler)
            assert pool.chat_template == pool.endpoints[0].sampler.chat_template != "unknown"
            assert (pool.retries_inside, pool.times_itself, pool.prefix_tokens_reused) == (False, False, 0)
            assert [e["base_url"] for e in pool.describe()] == [one.base_url, two.base_url]
            assert pool.endpoints[0].sampler.describe() is None  # one endpoint alone has nothing per endpoint
        finally:
            await pool.aclose()
