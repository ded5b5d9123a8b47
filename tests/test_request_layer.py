"""The shared request layer over real HTTP on loopback: the cap, retries, backoff, timeouts, metrics."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from engine.backends.factory import open_sampler
from engine.errors import BackendError
from engine.events import RequestFinished, RequestRetried, RequestStarted
from engine.request_layer import BACKOFF_CAP_S, RequestLayer, backoff_delay
from engine.sampler import Message, SampleRequest
from tests.conftest import openai_settings
from tests.fault_server import FaultConfig


async def open_layer(server, *, cap=8, timeout=5.0, retries=5, events=None):
    settings = openai_settings(server.base_url, max_concurrent=cap, timeout=timeout, max_retries=retries)
    sampler = await open_sampler(settings)
    emit = events.append if events is not None else (lambda event: None)
    layer = RequestLayer(sampler, max_concurrent=cap, timeout=timeout, max_retries=retries, emit=emit,
                         rng=random.Random(0))
    return sampler, layer


def request(sampler, i=0, n=2, max_tokens=4) -> SampleRequest:
    ids = tuple(sampler.render_chat([Message("user", f"question {i}")]))
    return SampleRequest(ids, n=n, max_tokens=max_tokens, temperature=1.0, seed=i)


def test_backoff_is_jittered_exponential_and_honours_retry_after():
    rng = random.Random(1)
    for attempt in range(1, 10):
        delay = backoff_delay(attempt, None, rng)
        assert 0 <= delay <= min(BACKOFF_CAP_S, 0.5 * 2 ** (attempt - 1))
    assert backoff_delay(1, 3.0, rng) >= 3.0
    assert len({round(backoff_delay(4, None, rng), 6) for _ in range(20)}) > 10


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.05)], indirect=True)
async def test_the_cap_really_bounds_requests_in_flight(fault_server):
    events = []
    sampler, layer = await open_layer(fault_server, cap=8, events=events)
    fault_server.stats.peak_in_flight = 0
    results = await asyncio.gather(*(layer.sample(request(sampler, i)) for i in range(120)))
    await sampler.aclose()
    assert all(len(r) == 2 for r in results)
    assert fault_server.stats.peak_in_flight == 8  # reached, never passed
    assert layer.stats.peak_in_flight == 8
    assert max(e.in_flight for e in events if isinstance(e, RequestStarted)) == 8
    assert layer.stats.requests == 120 and layer.stats.failures == 0


@pytest.mark.parametrize("fault_server", [FaultConfig(retry_after=0.2)], indirect=True)
async def test_429_and_5xx_are_retried_and_counted(fault_server):
    events = []
    sampler, layer = await open_layer(fault_server, events=events)
    fault_server.inject("429", "500", "503")
    result = await layer.sample(request(sampler))
    await sampler.aclose()
    assert len(result) == 2
    retried = [e for e in events if isinstance(e, RequestRetried)]
    assert [e.reason.split(":")[0] for e in retried] == ["HTTP 429", "HTTP 500", "HTTP 503"]
    finished = [e for e in events if isinstance(e, RequestFinished)]
    assert finished[-1].retries == 3 and finished[-1].error is None
    assert layer.stats.retries == 3 and layer.stats.attempts == 4


@pytest.mark.parametrize("fault_server", [FaultConfig(retry_after=1.0), FaultConfig(retry_after=1.0,
                                                                                    retry_after_as_date=True)],
                         indirect=True, ids=["seconds", "HTTP date"])
async def test_retry_after_is_waited_out(fault_server):
    events = []
    sampler, layer = await open_layer(fault_server, events=events)
    fault_server.inject("429")
    started = time.perf_counter()
    await layer.sample(request(sampler))
    elapsed = time.perf_counter() - started
    await sampler.aclose()
    delays = [e.delay_s for e in events if isinstance(e, RequestRetried)]
    assert delays and delays[0] >= 1.0
    assert elapsed >= 1.0


async def test_retries_are_bounded_and_the_failure_is_reported(fault_server):
    events = []
    sampler, layer = await open_layer(fault_server, retries=2, events=events)
    fault_server.config.rate_500 = 1.0
    fault_server.stats.requests = 0
    with pytest.raises(BackendError, match="HTTP 500"):
        await layer.sample(request(sampler))
    await sampler.aclose()
    assert fault_server.stats.requests == 3  # one try and two retries
    finished = [e for e in events if isinstance(e, RequestFinished)]
    assert finished[-1].error and finished[-1].retries == 2
    assert layer.stats.failures == 1


@pytest.mark.parametrize("fault_server", [FaultConfig(hang_s=5)], indirect=True)
async def test_a_hung_request_times_out_and_is_retried(fault_server):
    events = []
    sampler, layer = await open_layer(fault_server, timeout=0.5, events=events)
    fault_server.inject("hang")
    result = await layer.sample(request(sampler))
    await sampler.aclose()
    assert len(result) == 2
    assert any("timed out" in e.reason for e in events if isinstance(e, RequestRetried))


@pytest.mark.parametrize("fault_server", [FaultConfig(rate_ignore_n=1.0)], indirect=True)
async def test_a_server_that_ignores_n_gets_separate_requests(fault_server):
    sampler, layer = await open_layer(fault_server)
    assert sampler.honours_n is False  # found out by the probe
    fault_server.stats.requests = 0
    result = await layer.sample(request(sampler, n=4))
    await sampler.aclose()
    assert len(result) == 4
    assert len({c.token_ids for c in result}) == 4  # separate seeds, separate answers
    assert fault_server.stats.requests == 4


async def test_a_client_error_is_not_retried(fault_server):
    sampler, layer = await open_layer(fault_server)
    fault_server.inject("400")
    fault_server.stats.requests = 0
    with pytest.raises(BackendError, match="HTTP 400"):
        await layer.sample(request(sampler))
    await sampler.aclose()
    assert layer.stats.retries == 0 and fault_server.stats.requests == 1
