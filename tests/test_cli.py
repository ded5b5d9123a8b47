"""`beamtui run` and `beamtui bench` as a user runs them: real processes, the real model, loopback HTTP."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError
from tests.conftest import run_cli
from tests.fault_server import FaultConfig

SMALL = ["--beam-width", "2", "--n-per-beam", "2", "--block-tokens", "6", "--max-tokens", "12", "--seed", "1"]


def synthetic(server) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", "synthetic", "--tokenizer", "embedded"]


def test_run_json_on_the_embedded_model():
    done = run_cli("run", "--prompt", "Name a color.", *SMALL, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"best", "beams", "timing", "usage"}
    assert set(out["best"]) >= {"text", "score", "tokens"} and out["best"]["text"]
    assert out["best"] == out["beams"][0]
    assert set(out["timing"]) >= {"wall_s", "sum_request_s", "requests"}
    assert out["timing"]["requests"] == out["usage"]["requests"] > 0
    assert out["usage"]["completion_tokens"] >= out["best"]["tokens"]
    assert out["seed"] == 1


def test_run_prints_the_answer_and_a_table_of_beams():
    done = run_cli("run", "--prompt", "Name a color.", *SMALL)
    assert done.returncode == 0, done.stderr
    assert "best answer" in done.stdout and "final beams" in done.stdout and "seed 1" in done.stdout


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.05)], indirect=True)
def test_bench_json_rows(fault_server):
    done = run_cli("bench", *synthetic(fault_server), "--beam-widths", "1,4", "--n-per-beam", "2",
                   "--block-tokens", "4", "--max-tokens", "8", "--max-concurrent", "8", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert [row["beam_width"] for row in rows] == [1, 4]
    for row in rows:
        assert set(row) >= {"beam_width", "requests", "seq_s", "par_s", "speedup", "ideal", "efficiency"}
        assert row["speedup"] == pytest.approx(row["seq_s"] / row["par_s"], rel=1e-3)
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal"], rel=1e-3)
        assert row["same_best"] is True
    assert rows[0]["ideal"] == 1.0 and rows[1]["ideal"] == 4.0
    assert rows[1]["speedup"] > 2.5  # four requests per block, 50 ms each, sent together
    assert fault_server.stats.peak_in_flight <= 8


def test_bench_labels_simulated_latency():
    done = run_cli("bench", "--beam-widths", "2", "--n-per-beam", "1", "--block-tokens", "4", "--max-tokens", "4",
                   "--latency", "0.2", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert "0.2s per request (simulated)" in " ".join(done.stdout.split())


BAD_INPUT = [
    (["run", "--prompt", "x", "--beam-width", "0"], "beam-width must be an integer >= 1"),
    (["run", "--prompt", "x", "--n-per-beam", "-2"], "n-per-beam must be an integer >= 1"),
    (["run", "--prompt", "x", "--block-tokens", "0"], "block-tokens must be an integer >= 1"),
    (["run", "--prompt", "x", "--max-tokens", "0"], "max-tokens must be an integer >= 1"),
    (["run", "--prompt", "x", "--temperature", "-0.5"], "temperature must be >= 0"),
    (["run", "--prompt", "x", "--block-tokens", "64", "--max-tokens", "32"], "cannot be larger than max-tokens"),
    (["run", "--prompt", "x", "--backend", "vllm"], "invalid choice: 'vllm'"),
    (["run", "--prompt", "x", "--beam-width", "two"], "invalid int value"),
    (["run", "--prompt", "x", "--backend", "openai", "--model", "m"], "needs --base-url"),
    (["run", "--prompt", "x", "--backend", "openai", "--base-url", "localhost:8000", "--model", "m"],
     "malformed base URL"),
    (["run", "--prompt", "x", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
      "--tokenizer", "embedded", "--max-retries", "0"], "cannot reach http://127.0.0.1:9/v1"),
    (["run", "--prompt", "x", "--max-concurrent", "0"], "max-concurrent must be an integer >= 1"),
    (["run", "--prompt", "x", "--model-path", "/nonexistent/model.gguf"], "model file not found"),
    (["run", "--prompt", "x", "--weights", "fast"], "invalid choice: 'fast'"),
    (["run", "--prompt", "   "], "prompt is empty"),
    (["run"], "the following arguments are required: --prompt"),
    (["bench", "--beam-widths", "1,x"], "--beam-widths must be comma-separated integers"),
    (["bench", "--beam-widths", "0"], "--beam-widths must be integers >= 1"),
    (["bench", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--latency", "1"],
     "--latency simulates network delay on the local backend only"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_exit_2(argv, message):
    done = run_cli(*argv)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("fault_server", [FaultConfig(rate_no_logprobs=1.0)], indirect=True)
def test_an_endpoint_without_logprobs_exits_2(fault_server):
    done = run_cli("run", "--prompt", "x", *synthetic(fault_server))
    assert done.returncode == 2
    assert "returned no logprobs" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_weights_flag_reaches_the_local_backend():
    from engine.backends import create_sampler
    from engine.backends.local import PLAIN
    from tui.options import settings_from

    _, plain = settings_from({"weights": "plain"})
    _, auto = settings_from({})
    assert create_sampler(plain).layout == PLAIN
    assert create_sampler(auto).layout is None  # probed when the model loads
    with pytest.raises(ConfigError, match="weights must be one of auto, plain"):
        settings_from({"weights": "fast"})
