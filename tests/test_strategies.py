"""Every strategy on every backend: the real embedded model, the loopback endpoint and the Tinker stand-in.
A seeded run chooses the same answer in sequential and parallel mode, and watching candidates grow changes no
token and no logprob."""

from __future__ import annotations

import json

import pytest

from engine.backends.factory import open_sampler
from engine.backends.tinker_sdk import TinkerSampler
from engine.errors import ConfigError
from engine.registry import strategy_names
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import openai_settings, run_cli
from tests.test_tinker_backend import TINKER
from tests.tinker_standin import LocalTinkerClient

LOCAL = BackendSettings(max_concurrent=16)
SIZES = {"beam_width": 2, "n_per_beam": 2, "chains": 2, "mcmc_steps": 2, "particles": 3, "best_of": 3, "top_k": 3,
         "rollouts": 2}


def small(strategy: str, **changes) -> SearchSettings:
    return SearchSettings(strategy=strategy, prompt="Name a fruit.", block_tokens=3, max_tokens=6, seed=4,
                          **SIZES).replace(**changes)


def fingerprint(result) -> list[tuple]:
    return [(c.token_ids, c.logprobs, c.proposal_logprobs) for c in result.candidates]


@pytest.mark.parametrize("strategy", strategy_names())
async def test_local_seeded_sequential_parallel_and_streamed_runs_agree(local_sampler, strategy):
    settings = small(strategy)
    parallel = await run_search(settings, local_sampler, LOCAL)
    sequential = await run_search(settings.replace(mode="sequential"), local_sampler, LOCAL)
    growing = []
    streamed = await run_search(settings, local_sampler, LOCAL, growing.append, watch_growth=True)
    for result in (parallel, sequential, streamed):
        assert result.error is None and result.answer is not None and result.answer.length > 0
    assert parallel.answer.token_ids == sequential.answer.token_ids
    assert fingerprint(streamed) == fingerprint(parallel)  # to the bit
    assert parallel.requests == sequential.requests


@pytest.mark.parametrize("strategy", strategy_names())
async def test_openai_runs_every_strategy_and_modes_agree(fault_server, strategy):
    limits = openai_settings(fault_server.base_url, max_concurrent=8)
    sampler = await open_sampler(limits)
    try:
        settings = small(strategy, temperature=1.0)  # the synthetic server reports raw logprobs: exact at T 1
        parallel = await run_search(settings, sampler, limits)
        sequential = await run_search(settings.replace(mode="sequential"), sampler, limits)
    finally:
        await sampler.aclose()
    assert parallel.error is None and not parallel.approximate
    assert parallel.answer.token_ids == sequential.answer.token_ids


@pytest.mark.parametrize("strategy", strategy_names())
async def test_tinker_runs_every_strategy_like_the_local_model(local_sampler, strategy):
    sampler = TinkerSampler(model=TINKER.model, api_key=None, max_concurrent=8, timeout=30,
                            tokenizer="embedded", sampling_client=LocalTinkerClient(local_sampler))
    await open_sampler(TINKER, sampler)
    result = await run_search(small(strategy), sampler, TINKER)
    await sampler.aclose()
    local = await run_search(small(strategy), local_sampler, LOCAL)
    assert result.error is None and not result.approximate
    assert result.answer.token_ids == local.answer.token_ids


@pytest.mark.parametrize("strategy", strategy_names())
def test_run_json_reports_what_each_strategy_did(fault_server, strategy):
    endpoint = ["--backend", "openai", "--base-url", fault_server.base_url, "--model", "synthetic",
                "--tokenizer", "embedded", "--temperature", "1"]
    sizes = {"beam": ["--beam-width", "2", "--n-per-beam", "2"], "mcmc": ["--chains", "2", "--mcmc-steps", "2"],
             "smc": ["--particles", "3"], "best-of-n": ["--best-of", "3"]}.get(strategy, [])
    done = run_cli("run", "--strategy", strategy, *sizes, "--prompt", "hi", "--block-tokens", "3",
                   "--max-tokens", "6", "--seed", "1", "--json", *endpoint)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    answer = result["answer"]
    assert result["strategy"] == strategy and answer["text"] is not None and answer["tokens"] > 0
    assert {"target", "log_weight"} <= answer.keys()
    assert result["usage"]["requests"] >= 1 and result["usage"]["completion_tokens"] >= answer["tokens"]
    assert result["timing"]["wall_s"] > 0 and result["timing"]["rounds"]
    if strategy == "mcmc":
        assert 0 <= result["stats"]["acceptance_rate"] <= 1
    if strategy == "smc":
        assert "resamples" in result["stats"]
    width = ["--widths", "2"] if sizes else ["--widths", "1"]
    bench = run_cli("bench", "--strategy", strategy, *sizes, *width, "--block-tokens", "3", "--max-tokens", "6",
                    "--seed", "1", "--json", *endpoint)
    assert bench.returncode == 0, bench.stderr
    row = json.loads(bench.stdout)["rows"][0]
    assert row["strategy"] == strategy and row["same_answer"] is True and row["requests"] >= 1


def test_a_spec_names_sizes_and_the_samplers_output_and_reads_back():
    base = SearchSettings()
    for spec in ("smc:8", "smc:8:best", "mcmc:2x5", "mcmc:2x5:best", "beam:4x4", "greedy", "best-of-n:8"):
        assert base.with_spec(spec).spec == spec
    assert base.with_spec("smc:8:sample").output == "sample" and base.with_spec("smc:8:sample").spec == "smc:8"
    assert base.replace(output="best").with_spec("mcmc:2x5").output == "sample"  # a spec names its output whole
    for bad in ("beam:2x2:best", "smc:8:mode", "greedy:best"):
        with pytest.raises(ConfigError, match="unknown strategy spec"):
            base.with_spec(bad)


@pytest.mark.parametrize("strategy", ["mcmc", "smc"])
def test_run_json_says_what_the_answer_is_and_the_old_flag_name_still_works(fault_server, strategy):
    endpoint = ["--backend", "openai", "--base-url", fault_server.base_url, "--model", "synthetic",
                "--tokenizer", "embedded", "--temperature", "1"]
    for flag, output in (("--output", "best"), ("--smc-output", "sample")):
        done = run_cli("run", "--strategy", strategy, "--prompt", "hi", "--block-tokens", "3", "--max-tokens", "6",
                       "--seed", "1", "--json", flag, output, *endpoint)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["spec"].endswith(":best") == (output == "best")
        assert result["answer_is"].startswith("a draw from p^alpha" if output == "sample" else "the likeliest")
        assert result["settings"]["alpha"] == 4.0 and result["settings"]["temperature"] == 1.0


@pytest.mark.parametrize("streams", [True, False])
async def test_openai_streamed_candidates_grow_live_and_change_nothing(streams):
    """A server that streams completions with logprobs feeds the live board; one that does not gets whole
    responses. Either way the result is the same to the bit as without watching."""
    from engine.events import CandidatesGrowing
    from tests.fault_server import FaultConfig, ThreadedFaultServer

    config = FaultConfig(streams=streams, stream_token_s=0.03)
    for strategy in ("beam", "smc", "mcmc"):
        with ThreadedFaultServer(config) as server:
            limits = openai_settings(server.base_url, max_concurrent=8)
            sampler = await open_sampler(limits)
            try:
                settings = small(strategy, temperature=1.0, block_tokens=6, max_tokens=12)
                plain = await run_search(settings, sampler, limits)
                events = []
                watched = await run_search(settings, sampler, limits, events.append, watch_growth=True)
            finally:
                await sampler.aclose()
        assert fingerprint(watched) == fingerprint(plain), strategy
        grew = [e for e in events if isinstance(e, CandidatesGrowing)]
        assert sampler.streams is streams
        assert bool(grew) is streams, strategy
