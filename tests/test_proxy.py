"""`beamtui proxy`: its use case without HTTP, then the real openai SDK (sync and async, streaming and not) against
it on loopback, over the embedded model, a hostile upstream and the enumerable chain."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter

import openai
import pytest

from engine.proxy.requests import ProxyError, ProxyLimits, parse_request, split_model
from engine.proxy.service import ProxyService
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import ROOT, free_port, run_cli
from tests.fault_server import FaultConfig, ThreadedFaultServer
from tests.proxy_server import ThreadedProxy
from tests.synthetic import MarkovSampler, power_distribution, total_variation
from tui.commands.proxy_http import YOUNG_COLLECTION

DEFAULTS = SearchSettings(max_tokens=16, block_tokens=8, seed=None)
LIMITS = ProxyLimits(max_tokens=64, max_width=16, max_n=4)
CHAT = {"model": "greedy", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}


def parse(body, kind="chat", limits=LIMITS, serves=lambda name: name == "up/model"):
    return parse_request(kind, body, DEFAULTS, limits, serves)


def refusal(body, kind="chat", **options) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        parse(body, kind, **options)
    return caught.value


# The use case, without HTTP -------------------------------------------------------------------------------------

def test_the_model_field_is_a_spec_optionally_followed_by_the_upstream_model():
    assert split_model("smc:8") == ("smc:8", None)
    assert split_model("smc:8/Qwen/Qwen2.5-7B-Instruct") == ("smc:8", "Qwen/Qwen2.5-7B-Instruct")
    assert split_model("greedy") == ("greedy", None)
    assert split_model("Qwen/Qwen2.5-7B-Instruct") == (None, "Qwen/Qwen2.5-7B-Instruct")
    request = parse(CHAT | {"model": "mcmc:2x5x4/up/model", "beamtui": {"alpha": 3, "block_tokens": 4}})
    assert (request.search.strategy, request.search.chains, request.search.mcmc_steps, request.search.tries) == \
        ("mcmc", 2, 5, 4)
    assert request.upstream == "up/model" and request.search.alpha == 3 and request.search.block_tokens == 4
    plain = parse(CHAT | {"model": "up/model"})
    assert plain.search.strategy == DEFAULTS.strategy and plain.upstream == "up/model"


def test_the_api_s_own_fields_mean_what_they_mean_there():
    request = parse({k: v for k, v in CHAT.items() if k != "max_tokens"} | {
                            "model": "smc:4", "max_completion_tokens": 12, "temperature": 0.5, "seed": 7,
                            "stop": ["\n\n"], "n": 3, "logprobs": True, "user": "ada", "stream": True,
                            "stream_options": {"include_usage": True}, "top_p": 1, "frequency_penalty": 0})
    search = request.search
    assert (search.max_tokens, search.block_tokens, search.temperature, search.seed, search.stop) == \
        (12, 8, 0.5, 7, ("\n\n",))
    assert (request.n, request.logprobs, request.user, request.stream, request.include_usage) == \
        (3, True, "ada", True, True)
    assert search.prompt == "Name a colour." and request.prompt[-1].content == "Name a colour."
    completion = parse({"model": "beam:2x2", "prompt": "Once upon a time", "logprobs": 0}, "completions")
    assert completion.prompt == "Once upon a time" and completion.logprobs


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"messages": []}, 400, "model"),
    (CHAT | {"model": "smc:0"}, 422, "model"),
    (CHAT | {"model": "nobody/else"}, 404, "model"),
    (CHAT | {"frequency_penalty": 0.5}, 400, "frequency_penalty"),
    (CHAT | {"tools": [{"type": "function"}]}, 400, "tools"),
    (CHAT | {"top_logprobs": 3}, 400, "top_logprobs"),
    (CHAT | {"wibble": 1}, 400, "wibble"),
    (CHAT | {"beamtui": {"wibble": 1}}, 400, "beamtui.wibble"),
    (CHAT | {"beamtui": {"particles": "eight"}}, 400, "beamtui.particles"),
    (CHAT | {"n": 0}, 400, "n"),
    (CHAT | {"n": 99}, 400, "n"),
    (CHAT | {"max_tokens": -1}, 400, "max_tokens"),
    (CHAT | {"max_tokens": 10**9}, 400, "max_tokens"),
    (CHAT | {"max_tokens": 8, "max_completion_tokens": 9}, 400, "max_completion_tokens"),
    (CHAT | {"temperature": 3}, 400, "temperature"),
    (CHAT | {"model": "smc:4", "temperature": 0}, 422, "model"),
    (CHAT | {"seed": -5}, 400, "seed"),
    (CHAT | {"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    (CHAT | {"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
    (CHAT | {"messages": [{"role": "user", "content": ""}]}, 400, "messages[0].content"),
    (CHAT | {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
     "messages[0].content"),
    (CHAT | {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "so"}]}, 400,
     "messages[1].role"),
    (CHAT | {"stream_options": {"include_usage": True}}, 400, "stream_options"),
    (CHAT | {"model": "smc:99"}, 400, "model"),
    (CHAT | {"model": "sps:4x32"}, 400, "model"),  # 32 rollouts a candidate, past --max-width 16
])
def test_what_cannot_be_honoured_is_refused_naming_it(body, status, param):
    error = refusal(body)
    assert (error.status, error.param) == (status, param), error
    assert error.body()["error"]["message"] and error.body()["error"]["type"]


def test_allow_limits_the_strategies_served():
    error = refusal(CHAT | {"model": "mcmc:2x5"}, limits=ProxyLimits(allow=frozenset({"smc", "greedy"})))
    assert error.status == 400 and "mcmc" in error.message and "greedy, smc" in error.message


def test_metrics_keep_a_bounded_number_of_spec_series_whatever_clients_send():
    from engine.events import ClientRequestFinished
    from engine.proxy.metrics import MOST_SPECS, ProxyMetrics

    metrics = ProxyMetrics(lambda: 0, lambda: 0, lambda: 0)
    for steps in range(1, 3 * MOST_SPECS):
        metrics.observe(ClientRequestFinished("r", 200, "", 1, 1, "stop", None), f"mcmc:1x{steps}", 0.1)
    text = metrics.exposition().decode()
    specs = {line.split('spec="')[1].split('"')[0] for line in text.splitlines() if 'spec="' in line}
    assert len(specs) == MOST_SPECS + 1 and "other" in specs and "mcmc:1x1" in specs
    assert f'beamtui:request_success_total{{finished_reason="stop",spec="other"}} {2 * MOST_SPECS - 1}.0' in text


def chain_model() -> MarkovSampler:
    from tests.test_exactness import chain

    return chain()


def chain_service(**options) -> ProxyService:
    """A proxy whose upstream is the enumerable chain, in-process."""
    model = chain_model()

    async def opener(settings):
        return model

    backend = BackendSettings(max_concurrent=64, max_retries=0)
    defaults = SearchSettings(alpha=2.0, max_tokens=4, block_tokens=4)
    return ProxyService(defaults, backend, ProxyLimits(max_tokens=4, max_width=16, max_n=8), opener=opener,
                        **options)


async def test_the_use_case_answers_an_openai_object_with_what_the_search_spent():
    service = chain_service()
    await service.start()
    events = []
    service.sinks.append(events.append)
    request = service.parse("chat", {"model": "smc:4", "messages": [{"role": "user", "content": "Go."}], "n": 2,
                                     "seed": 5, "logprobs": True})
    with service.admitted():
        answer = await service.complete(request)
    assert answer["object"] == "chat.completion" and answer["model"] == "smc:4" and len(answer["choices"]) == 2
    about = answer["beamtui"]
    assert about["spec"] == "smc:4" and about["answer_is"].startswith("a draw from p^alpha")
    assert about["logprobs"] == "exact" and len(about["searches"]) == 2
    assert answer["usage"]["completion_tokens"] == sum(s["usage"]["completion_tokens"] for s in about["searches"])
    assert all(c["logprobs"]["content"] for c in answer["choices"])
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["ClientRequestStarted"] == kinds["ClientRequestFinished"] == 1 and kinds["SearchStarted"] == 2
    assert {e.run_id.partition("/")[0] for e in events} == {answer["id"]}
    assert service.active == 0


# Over HTTP, with the real SDK -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_proxy():
    """The proxy in front of the embedded model, shared by the tests that only read from it."""
    service = ProxyService(SearchSettings(max_tokens=16, block_tokens=8), BackendSettings(max_concurrent=16),
                           ProxyLimits(max_tokens=16, max_width=8, max_n=2))
    with ThreadedProxy(service) as proxy:
        yield proxy


def test_the_sync_sdk_gets_chat_and_completions_with_usage_and_what_the_answer_is(local_proxy):
    client = openai.OpenAI(base_url=local_proxy.base_url, api_key="anything", max_retries=0)
    chat = client.chat.completions.create(model="smc:2", messages=[{"role": "user", "content": "Name a colour."}],
                                          max_tokens=8, seed=3)
    assert chat.choices[0].message.content and chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage.completion_tokens >= len(chat.choices[0].message.content.split()) > 0
    assert chat.model_extra["beamtui"]["spec"] == "smc:2"
    completion = client.completions.create(model="beam:2x2", prompt="The sky is", max_tokens=6, seed=1)
    assert completion.choices[0].text and completion.usage.prompt_tokens > 0
    assert {m.id for m in client.models.list().data} >= {"smc:8", "greedy", "beam:4x4"}


async def test_the_async_sdk_streams_a_greedy_answer_as_it_is_decoded_and_a_search_at_its_end(local_proxy):
    client = openai.AsyncOpenAI(base_url=local_proxy.base_url, api_key="anything", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="greedy", messages=[{"role": "user", "content": "Count to twenty."}], max_tokens=16, stream=True,
            stream_options={"include_usage": True})
        deltas, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                deltas.append(chunk.choices[0].delta.content or "")
            else:
                usage = chunk.usage
        whole = await client.chat.completions.create(
            model="greedy", messages=[{"role": "user", "content": "Count to twenty."}], max_tokens=16)
        assert "".join(deltas) == whole.choices[0].message.content  # the same answer, streamed
        assert sum(1 for d in deltas if d) >= 2  # in pieces as it was decoded, not in one at the end
        assert usage is not None and usage.completion_tokens == 16
        searched = await client.chat.completions.create(
            model="smc:2", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True, seed=2)
        pieces = [c.choices[0].delta.content for c in [chunk async for chunk in searched] if c.choices]
        assert "".join(p or "" for p in pieces)
    finally:
        await client.close()


def test_a_hostile_upstream_gets_every_client_an_answer_or_a_clear_error():
    chaos = FaultConfig(rate_429=0.2, rate_500=0.05, rate_503=0.05, rate_hang=0.03, rate_malformed=0.03,
                        rate_reset=0.03, hang_s=5, retry_after=0.1, seed=4)
    with ThreadedFaultServer(chaos) as upstream:
        backend = BackendSettings(backend="openai", base_url=upstream.base_url, model="synthetic",
                                  tokenizer="embedded", max_concurrent=8, timeout=2, max_retries=6)
        service = ProxyService(SearchSettings(max_tokens=8, block_tokens=4, temperature=1.0), backend,
                               ProxyLimits(max_tokens=8))
        with ThreadedProxy(service) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0, timeout=60)
            outcomes = Counter()
            for index in range(12):
                try:
                    answer = client.chat.completions.create(model=["greedy", "smc:2", "beam:2x2"][index % 3],
                                                            messages=[{"role": "user", "content": f"q{index}"}],
                                                            max_tokens=8, seed=index)
                    outcomes["answered"] += bool(answer.choices[0].message.content is not None)
                except openai.APIStatusError as exc:
                    outcomes[exc.status_code] += 1
                    assert exc.body["message"]  # an OpenAI error object, in words
            assert outcomes["answered"] >= 8 and sum(outcomes.values()) == 12, outcomes
            assert service.active == 0


def test_two_hundred_malformed_requests_each_get_an_openai_error_and_the_server_goes_on(local_proxy):
    url = local_proxy.base_url + "/chat/completions"
    bodies: list[tuple[bytes, int]] = [
        (b"{not json", 400), (b"\xff\xfe\x00bad utf-8", 400), (b"[1, 2, 3]", 400), (b"null", 400), (b"", 400),
        (json.dumps({"model": "greedy"}).encode(), 400),
        (json.dumps({"model": "greedy", "messages": "hi"}).encode(), 400),
        (json.dumps({"model": 7, "messages": [{"role": "user", "content": "hi"}]}).encode(), 400),
        (json.dumps(CHAT | {"model": "nonsense:spec"}).encode(), 404),
        (json.dumps(CHAT | {"n": 0}).encode(), 400), (json.dumps(CHAT | {"max_tokens": -1}).encode(), 400),
        (json.dumps(CHAT | {"max_tokens": 10**9}).encode(), 400),
        (json.dumps(CHAT | {"model": "smc:2", "temperature": 0}).encode(), 422),
        (json.dumps(CHAT | {"temperature": "hot"}).encode(), 400),
        (json.dumps(CHAT | {"stream": "yes"}).encode(), 400),
        (json.dumps(CHAT | {"logit_bias": {"5": 10}}).encode(), 400),
        (b'{"model": "greedy", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400),
    ]
    statuses = Counter()
    for _ in range(12):
        for body, expected in bodies:
            statuses[_post(url, body)[0] == expected] += 1
    big = b'{"model": "greedy", "messages": [{"role": "user", "content": "' + b"x" * (2 << 20) + b'"}]}'
    assert _post(url, big)[0] == 413
    assert _post(local_proxy.base_url + "/nowhere", b"{}")[0] == 404
    assert _request(local_proxy.base_url + "/chat/completions", "GET")[0] == 405
    for status, error in (_post(url, b"{bad"),):
        assert status == 400 and set(error["error"]) == {"message", "type", "param", "code"}
    assert statuses[True] == 12 * len(bodies) >= 200, statuses
    status, good = _post(url, json.dumps(CHAT).encode())
    assert status == 200 and good["choices"][0]["message"]["content"]
    assert len(local_proxy.lines) >= 200 and all(line.count("\n") == 0 for line in local_proxy.lines)


def test_metrics_count_requests_tokens_and_latency_by_spec(local_proxy):
    _post(local_proxy.base_url + "/chat/completions", json.dumps(CHAT | {"model": "best-of-n:2"}).encode())
    status, text = _request(local_proxy.root + "/metrics", "GET", raw=True)
    assert status == 200
    assert 'beamtui:request_success_total{finished_reason="' in text and 'spec="best-of-n:2"' in text
    assert "beamtui:e2e_request_latency_seconds_bucket" in text and "beamtui:upstream_request_latency_seconds" in text
    assert "beamtui:num_requests_running" in text and "beamtui:generation_tokens_total" in text
    assert _request(local_proxy.root + "/health", "GET")[1]["status"] == "ok"


def test_the_proxy_freezes_its_start_up_heap_and_collects_young_objects_less_often():
    """The collector as a server wants it (benchmarks.proxy_load: with Python's defaults it took 3.0 s of the
    proxy's CPU), set once the upstream is open; in a process of its own, as `beamtui proxy` runs."""
    code = textwrap.dedent("""
        import asyncio, gc
        from engine.proxy.requests import ProxyLimits
        from engine.proxy.service import ProxyService
        from engine.settings import BackendSettings, SearchSettings
        from tui.commands.proxy_http import serve

        async def main():
            before = gc.get_threshold()[0]
            stop = asyncio.Event()
            service = ProxyService(SearchSettings(max_tokens=4), BackendSettings(max_concurrent=2), ProxyLimits())
            await serve(service, "127.0.0.1", PORT, None, "", log=print, ready=stop.set, stop=stop)
            print(before, gc.get_threshold()[0], gc.get_freeze_count())

        asyncio.run(main())
    """).replace("PORT", str(free_port()))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-800:]
    before, after, frozen = map(int, done.stdout.split()[-3:])
    assert (before, after) == (700, YOUNG_COLLECTION)
    assert frozen > 50_000  # the SDK's types, the tokenizer, the model's bindings: what never becomes garbage


def test_past_the_queue_a_client_is_told_429_with_retry_after():
    with ThreadedFaultServer(FaultConfig(latency=1.5)) as upstream:
        backend = BackendSettings(backend="openai", base_url=upstream.base_url, model="synthetic",
                                  tokenizer="embedded", max_concurrent=4)
        service = ProxyService(SearchSettings(max_tokens=4, block_tokens=4), backend, ProxyLimits(max_tokens=4),
                               max_queue=1)
        with ThreadedProxy(service) as proxy:
            url = proxy.base_url + "/chat/completions"
            first = threading.Thread(target=_post, args=(url, json.dumps(CHAT | {"max_tokens": 4}).encode()))
            first.start()
            deadline = time.monotonic() + 10
            while service.active == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            status, error, headers = _post(url, json.dumps(CHAT | {"max_tokens": 4}).encode(), headers_too=True)
            first.join()
    assert status == 429 and error["error"]["type"] == "rate_limit_error" and float(headers["Retry-After"]) > 0


def test_a_client_that_leaves_cancels_its_search_and_frees_its_upstream_slots():
    # The start-up's three probes are answered; every request after them hangs for 30 s, or until it is dropped.
    with ThreadedFaultServer(FaultConfig(script=("",) * 3 + ("hang",) * 12, hang_s=30)) as upstream:
        backend = BackendSettings(backend="openai", base_url=upstream.base_url, model="synthetic",
                                  tokenizer="embedded", max_concurrent=8, timeout=60)
        service = ProxyService(SearchSettings(max_tokens=4, block_tokens=4), backend, ProxyLimits(max_tokens=4))
        with ThreadedProxy(service) as proxy:
            def upstream_in_flight() -> int:
                return sum(layer.in_flight for layer in list(service.layers.values()))

            async def leave_early(stream: bool):
                client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
                call = asyncio.ensure_future(client.chat.completions.create(
                    model="best-of-n:3", messages=[{"role": "user", "content": "wait"}], max_tokens=4, stream=stream))
                while upstream_in_flight() < 3:
                    await asyncio.sleep(0.02)
                if stream:  # the stream is open: the client closes it
                    await (await call).close()
                else:  # the call waits for its answer: the client gives up on it
                    call.cancel()
                    await asyncio.gather(call, return_exceptions=True)
                await client.close()
                left = time.monotonic()
                while (upstream_in_flight() or service.active) and time.monotonic() - left < 5:
                    await asyncio.sleep(0.02)
                return time.monotonic() - left

            for stream in (False, True):
                assert asyncio.run(leave_early(stream)) < 2.0  # a 30 s upstream: nothing waited it out
                assert upstream_in_flight() == 0 and service.active == 0
            deadline = time.monotonic() + 5
            while upstream.stats.in_flight and time.monotonic() < deadline:  # and the upstream saw them go
                time.sleep(0.05)
            assert upstream.stats.in_flight == 0
            status, text = _request(proxy.root + "/metrics", "GET", raw=True)
            assert 'beamtui:request_failure_total{spec="best-of-n:3",status="499"} 2.0' in text


def test_the_upstream_key_never_reaches_a_client_a_log_a_metric_or_the_event_stream(monkeypatch):
    secret = "sk-upstream-secret-4242"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    # The start-up's three probes and the first question are answered; the second question gets a 400 whose body
    # quotes the request's Authorization header back.
    with ThreadedFaultServer(FaultConfig(echo_auth=True, script=("",) * 4 + ("400",))) as upstream:
        backend = BackendSettings(backend="openai", base_url=upstream.base_url, model="synthetic",
                                  tokenizer="embedded", max_retries=0)
        service = ProxyService(SearchSettings(max_tokens=4, block_tokens=4), backend, ProxyLimits(max_tokens=4))
        with ThreadedProxy(service, token="client-token-1234") as proxy:
            events = []
            reader = threading.Thread(target=_read_events, args=(proxy.root, "client-token-1234", events), daemon=True)
            reader.start()
            time.sleep(0.3)
            client = openai.OpenAI(base_url=proxy.base_url, api_key="client-token-1234", max_retries=0)
            seen = [client.chat.completions.create(**CHAT | {"max_tokens": 4}, seed=1).model_dump_json()]
            try:
                client.chat.completions.create(**CHAT | {"max_tokens": 4}, seed=2)
            except openai.APIStatusError as exc:
                seen.append(json.dumps(exc.body))
            seen.append(_request(proxy.root + "/metrics", "GET", raw=True, token="client-token-1234")[1])
            time.sleep(0.5)
            seen += proxy.lines + [json.dumps(e) for e in events]
            authorizations = list(upstream.stats.authorizations)
    assert events and any(e.get("type") == "SearchFinished" for e in events)
    assert all(secret not in text for text in seen)
    assert f"Bearer {secret}" in authorizations  # the upstream got its own key...
    assert not any("client-token-1234" in a for a in authorizations)  # ...and never the client's


def test_every_route_needs_the_token_when_one_is_set():
    service = chain_service()
    with ThreadedProxy(service, token="right-token-99") as proxy:
        for path in ("/v1/models", "/health", "/metrics", "/beamtui/v1/events"):
            status, body = _request(proxy.root + path, "GET", token="wrong-token-99")
            assert status == 401 and body["error"]["code"] == "invalid_api_key", path
        assert _request(proxy.root + "/v1/models", "GET", token="right-token-99")[0] == 200
        client = openai.OpenAI(base_url=proxy.base_url, api_key="right-token-99", max_retries=0)
        assert client.chat.completions.create(model="greedy", messages=[{"role": "user", "content": "x"}]).choices


# Exactness through the proxy ------------------------------------------------------------------------------------

DRAWS = 1000
EXACT_WITHIN = 0.11  # the direct path's bound at 1,000 draws (tests/test_exactness.py)


@pytest.mark.parametrize("spec", ["smc:16", "mcmc:1x10"])
def test_samplers_through_the_proxy_draw_from_p_alpha_as_the_direct_path_does(spec):
    """The chain upstream, 1,000 answers through /v1/chat/completions with seeds 0..999: the same answers as
    run_search gives with those seeds, and within the direct path's bound of p^alpha. (mcmc's answer is one chain
    chosen uniformly, so one chain has its law at an eighth of eight chains' cost.)"""
    from tests.chain_paths import collect
    from tests.test_exactness import ALPHA, LENGTH, MCMC, SMC

    settings = SMC if spec.startswith("smc") else MCMC.replace(chains=1)
    direct, _ = asyncio.run(collect(chain_model(), settings, DRAWS))
    service = chain_service()
    with ThreadedProxy(service) as proxy:
        async def draw_all() -> Counter:
            client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
            gate = asyncio.Semaphore(16)
            words = chain_model().words

            async def one(seed: int) -> tuple[int, ...]:
                async with gate:
                    answer = await client.chat.completions.create(
                        model=spec, messages=[{"role": "user", "content": "Name four colours."}], seed=seed,
                        extra_body={"beamtui": {"block_tokens": settings.block_tokens}})
                text = answer.choices[0].message.content  # the chain writes its end word, ".", as text
                return tuple(words.index(word) for word in text.replace(".", " .").split())

            answers = await asyncio.gather(*(one(seed) for seed in range(DRAWS)))
            await client.close()
            return Counter(answers)

        through = asyncio.run(draw_all())
    assert through == direct
    assert total_variation(through, power_distribution(chain_model(), ALPHA, LENGTH)) < EXACT_WITHIN


# The dashboards -------------------------------------------------------------------------------------------------

async def test_the_request_table_shows_each_request_and_the_selected_one_s_search():
    from tests.conftest import free_port
    from tui.panels.requests import RequestsPanel
    from tui.proxy_app import ProxyApp

    port = free_port()
    app = ProxyApp(chain_service(), "127.0.0.1", port, None, "test proxy")
    async with app.run_test(size=(160, 48)) as pilot:
        deadline = time.monotonic() + 20
        while not any("listening" in line.text for line in app.query_one("LogPanel").lines):
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        for spec in ("smc:4", "mcmc:2x2", "greedy"):
            await client.chat.completions.create(model=spec, messages=[{"role": "user", "content": "Go."}], seed=1)
        await client.close()
        await pilot.pause(0.5)
        panel = app.query_one(RequestsPanel)
        rows = [[str(c) for c in panel.table.get_row_at(i)] for i in range(panel.table.row_count)]
        assert [row[1] for row in rows] == ["greedy", "mcmc:2x2", "smc:4"]  # newest first
        assert all(row[2] == "answered" and int(row[3]) > 0 for row in rows)
        await pilot.press("down", "down")  # the smc request
        await pilot.pause(0.3)
        assert app.query_one("PopulationPanel").border_title == "Particles"
        await pilot.press("q")


def test_watch_shows_a_proxy_s_requests_from_its_event_stream():
    from tui.proxy_app import WatchApp

    service = chain_service()
    with ThreadedProxy(service, token="watch-token-77") as proxy:
        async def watched() -> list[str]:
            app = WatchApp(proxy.root, "watch-token-77")
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.pause(0.5)
                client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="watch-token-77", max_retries=0)
                await client.chat.completions.create(model="smc:4", messages=[{"role": "user", "content": "Go."}])
                await client.close()
                deadline = time.monotonic() + 10
                while not app.state.requests or next(iter(app.state.requests.values())).finished is None:
                    assert time.monotonic() < deadline
                    await pilot.pause(0.05)
                states = [r.state for r in app.state.requests.values()]
                await pilot.press("q")
            return states

        assert asyncio.run(watched()) == ["answered"]


@pytest.mark.parametrize(("argv", "message"), [
    (["proxy", "--port", "0"], "--port must be 1 to 65535"),
    (["proxy", "--allow", "smc,telepathy"], "--allow names no strategy 'telepathy'"),
    (["proxy", "--max-width", "0"], "--max-width must be >= 1"),
    (["proxy", "--api-key", "short"], "--api-key must be at least 8 characters"),
    (["proxy", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--tokenizer",
      "embedded"], "cannot reach http://127.0.0.1:9/v1"),
    (["watch", "localhost:8100"], "malformed URL"),
    (["proxy", "--prompt", "hi"], "--prompt does not apply to `beamtui proxy`"),
])
def test_bad_proxy_input_is_one_line_and_exit_2(argv, message):
    done = run_cli(*argv, timeout=60)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


# Helpers --------------------------------------------------------------------------------------------------------

def _request(url: str, method: str, body: bytes | None = None, *, raw: bool = False, token: str | None = None,
             headers_too: bool = False):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, data, answer_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, data, answer_headers = exc.code, exc.read(), exc.headers
    text = data.decode("utf-8", "replace")
    content = text if raw else json.loads(text)
    return (status, content, answer_headers) if headers_too else (status, content)


def _post(url: str, body: bytes, **options):
    return _request(url, "POST", body, **options)


def _read_events(root: str, token: str, into: list) -> None:
    request = urllib.request.Request(root + "/beamtui/v1/events", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as stream:
        for line in stream:
            if line.startswith(b"data: "):
                into.append(json.loads(line[6:]))

