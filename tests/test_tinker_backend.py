"""Tinker through its SDK types. The remote service cannot be reached here, so a stand-in sampling client
(tests/tinker_standin.py) answers `sample(...)` with real `tinker.types.SampleResponse` objects computed by the
embedded model."""

from __future__ import annotations

import time

import pytest

from engine.backends.factory import open_sampler
from engine.backends.tinker_sdk import TinkerSampler
from engine.errors import ConfigError
from engine.sampler import Message
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import run_cli
from tests.tinker_standin import LocalTinkerClient

TINKER = BackendSettings(backend="tinker", model="HuggingFaceTB/SmolLM2-135M-Instruct", tokenizer="embedded")


async def test_search_over_tinker_types(local_sampler):
    client = LocalTinkerClient(local_sampler)
    sampler = TinkerSampler(model=TINKER.model, api_key=None, max_concurrent=8, timeout=30,
                            tokenizer="embedded", sampling_client=client)
    await open_sampler(TINKER, sampler)
    assert sampler.scaled is True  # found out by the start-up probe
    client.calls.clear()
    settings = SearchSettings(prompt="Name a planet.", beam_width=2, n_per_beam=3, block_tokens=5,
                              max_tokens=10, seed=8)
    result = await run_search(settings, sampler, TINKER)
    await sampler.aclose()
    assert result.error is None and result.answer is not None
    prompt, num_samples, params = client.calls[0]
    assert num_samples == 3 and params.max_tokens == 5 and params.temperature == pytest.approx(0.25)
    assert prompt.to_ints() == local_sampler.render_chat([Message("user", "Name a planet.")])
    local = await run_search(settings, local_sampler, BackendSettings())
    assert [b.token_ids for b in result.candidates] == [b.token_ids for b in local.candidates]


async def test_requests_spread_over_several_tinker_clients_with_the_same_answer(local_sampler):
    settings = SearchSettings(prompt="Name a planet.", beam_width=2, n_per_beam=2, block_tokens=4, max_tokens=8,
                              seed=3)
    answers = {}
    for count in (1, 2):
        clients = [LocalTinkerClient(local_sampler) for _ in range(count)]
        sampler = TinkerSampler(model=TINKER.model, api_key=None, max_concurrent=8, timeout=30,
                                tokenizer="embedded", sampling_client=clients)
        await open_sampler(TINKER, sampler)
        for client in clients:
            client.calls.clear()
        result = await run_search(settings, sampler, TINKER)
        await sampler.aclose()
        answers[count] = result.answer.token_ids
        assert all(client.calls for client in clients)  # each client sent some of the search's requests
    assert answers[1] == answers[2]


async def test_tinker_sdk_retries_are_not_stacked_with_ours(local_sampler):
    from engine.request_layer import RequestLayer

    sampler = TinkerSampler(model="m", api_key=None, max_concurrent=2, timeout=30, tokenizer="embedded",
                            sampling_client=LocalTinkerClient(local_sampler))
    assert RequestLayer(sampler, max_concurrent=2, timeout=30, max_retries=5).max_retries == 0


async def test_missing_key_is_a_clear_error_at_once(monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="TINKER_API_KEY"):
        await open_sampler(TINKER)
    assert time.perf_counter() - started < 2


def test_missing_key_from_the_command_line_exits_2():
    done = run_cli("run", "--prompt", "hi", "--backend", "tinker", "--model", "m", env={"TINKER_API_KEY": ""})
    assert done.returncode == 2
    assert done.stderr.strip() == "beamtui: error: the tinker backend needs TINKER_API_KEY in the environment"

