"""The OpenAI backend over real HTTP: llama-cpp-python's own server, and the synthetic loopback endpoint."""

from __future__ import annotations

import time

import pytest

from engine.backends.factory import open_sampler
from engine.backends.local.backend import LocalSampler
from engine.backends.local.model_file import embedded_model_path
from engine.backends.server_tokenizer import ServerTokenizer
from engine.errors import ConfigError
from engine.sampler import Message, SampleRequest
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import openai_settings, run_cli
from tests.fault_server import FaultConfig, ThreadedFaultServer
from tests.llama_server import server_layout


def llama_settings(base_url: str, **changes) -> BackendSettings:
    return BackendSettings(backend="openai", base_url=base_url, model="smollm2", tokenizer="embedded", **changes)


async def test_llama_server_ignores_n_and_refuses_token_prompts_and_we_adapt(llama_server):
    sampler = await open_sampler(llama_settings(llama_server))
    try:
        assert sampler.honours_n is False
        assert sampler.token_prompts is False
        settings = SearchSettings(prompt="Name a fruit.", beam_width=2, n_per_beam=2, block_tokens=6,
                                  max_tokens=12, seed=4)
        result = await run_search(settings, sampler, llama_settings(llama_server))
    finally:
        await sampler.aclose()
    assert result.error is None and result.answer is not None
    assert result.rounds[0].requests == 4  # 2 beams x n=2, sent as separate requests
    for beam in result.candidates:
        assert beam.length > 0 and len(beam.logprobs) == beam.length
        assert all(lp <= 0 for lp in beam.logprobs)


AGREEMENT_PROMPTS = ("What is the capital of France?", "Name three fruits.", "Why is the sky blue?",
                     "Write a haiku about rain.", "Count to five.")


async def test_llama_server_logprobs_agree_with_the_embedded_model(llama_server):
    """Same GGUF, same prompts, greedy: the server's per-token logprobs match our own computation, token by token
    for as long as both took the same path.

    Both run flash attention, as llama.cpp does by default: `python -m benchmarks.logprob_agreement --flash-attn
    on --server-flash-attn` measured no difference at all over 131 tokens on an AMD EPYC (Zen 1, no AVX-512).
    Without it the two take different kernel paths and round differently, by CPU: a mean difference of 0.017
    and a maximum of 0.25 there, 0.067 at most on another EPYC. The bounds sit above those, for CPUs whose
    kernels differ, and far below what a real error makes: a logprob of the wrong token, position or
    temperature is off by whole nats."""
    sampler = await open_sampler(llama_settings(llama_server))
    local_sampler = LocalSampler(threads=2, layout=server_layout(embedded_model_path()))
    await local_sampler.start()
    differences = []
    try:
        for prompt in AGREEMENT_PROMPTS:
            messages = (Message("user", prompt),)
            ids = tuple(local_sampler.render_chat(messages))
            request = SampleRequest(ids, n=1, max_tokens=8, temperature=0.0, seed=0, messages=messages,
                                    prompt_len=len(ids))
            remote = (await sampler.sample(request))[0]
            local = (await local_sampler.sample(request))[0]
            assert remote.token_ids[0] == local.token_ids[0]
            for theirs, ours, x, y in zip(remote.token_ids, local.token_ids, remote.logprobs, local.logprobs,
                                          strict=False):
                if theirs != ours:
                    break  # a near-tie broke differently: past here the two answers differ
                differences.append(abs(x - y))
    finally:
        await sampler.aclose()
        await local_sampler.aclose()
    assert len(differences) >= 15
    assert sum(differences) / len(differences) < 0.05
    assert max(differences) < 0.4


async def test_requests_go_through_the_openai_sdk_with_the_key_or_no_authorization_at_all(monkeypatch):
    from tests.fault_server import ThreadedFaultServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    with ThreadedFaultServer(FaultConfig()) as server:
        for settings in (openai_settings(server.base_url), openai_settings(server.base_url).pinned_key()):
            sampler = await open_sampler(settings)
            await sampler.aclose()
        settings = openai_settings(server.base_url).replace(key_for=())  # pinned elsewhere: no key here
        sampler = await open_sampler(settings)
        await sampler.aclose()
    assert all(agent.startswith("AsyncOpenAI/Python") for agent in server.stats.user_agents)
    assert set(server.stats.authorizations) == {"Bearer sk-test-0123456789", ""}
    assert server.stats.authorizations[-1] == ""  # the SDK found OPENAI_API_KEY in the environment: not sent


async def test_token_id_servers_get_token_ids_back_and_forth(fault_server):
    sampler = await open_sampler(openai_settings(fault_server.base_url))
    try:
        assert sampler.token_prompts is True and sampler.honours_n is True
        ids = tuple(sampler.render_chat([Message("user", "hi")]))
        continuations = await sampler.sample(SampleRequest(ids, n=3, max_tokens=5, temperature=1.0, seed=1))
    finally:
        await sampler.aclose()
    assert len(continuations) == 3
    for c in continuations:
        assert len(c.token_ids) == len(c.logprobs) == 5
        assert all(100 <= t < 4000 for t in c.token_ids)  # ids straight from the server, not re-tokenised


async def small_beam_search(settings: BackendSettings):
    sampler = await open_sampler(settings)
    try:
        search = SearchSettings(prompt="hi", beam_width=2, n_per_beam=2, block_tokens=4, max_tokens=8, seed=1)
        return await run_search(search, sampler, settings)
    finally:
        await sampler.aclose()


async def test_chat_mode_scores_from_chat_logprobs(fault_server):
    result = await small_beam_search(openai_settings(fault_server.base_url, api="chat"))
    assert result.error is None
    assert all(beam.logprobs and len(beam.logprobs) == beam.length for beam in result.candidates)


@pytest.mark.parametrize("fault_server", [FaultConfig(finish_reason="content_filter", eos_rate=0.5)], indirect=True)
async def test_only_stop_ends_an_answer_and_other_finish_reasons_are_kept(fault_server):
    """A filtered or aborted answer is not an ended one: it stays open, and says why it stopped."""
    result = await small_beam_search(openai_settings(fault_server.base_url))
    assert result.candidates and result.stop_reason != "finished"
    for candidate in result.candidates:
        assert candidate.finish_reason == "content_filter" and not candidate.finished
    assert result.to_json()["answer"]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("fault_server", [FaultConfig(rate_no_logprobs=1.0)], indirect=True)
async def test_an_endpoint_without_logprobs_is_refused_at_start(fault_server):
    with pytest.raises(ConfigError, match="no logprobs"):
        await open_sampler(openai_settings(fault_server.base_url))


async def test_an_unreachable_endpoint_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot reach"):
        await open_sampler(openai_settings("http://127.0.0.1:9/v1", max_retries=1, timeout=2))


@pytest.mark.parametrize("tokenizer", [[], ["--tokenizer", "embedded"]], ids=["no tokenizer", "embedded"])
def test_a_refused_port_is_named_at_once_before_any_tokenizer(tokenizer):
    """A dead server is the error, found in one look, with no retries and no trip to the Hugging Face Hub."""
    started = time.monotonic()
    done = run_cli("run", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--prompt",
                   "hi", *tokenizer, env={"HF_HUB_OFFLINE": ""}, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot reach http://127.0.0.1:9/v1" in done.stderr, done.stderr
    assert "tokenizer" not in done.stderr and "huggingface" not in done.stderr
    assert took < 5.0, f"a refused port took {took:.1f}s to report"  # 10.3 s with retries; ~1.5 s is start-up


@pytest.mark.parametrize("dialect", ["vllm", "llama.cpp"])
async def test_without_a_tokenizer_the_server_s_own_is_used_exactly(dialect):
    """The server's /tokenize and /detokenize, in vLLM's and llama.cpp's formats: the prompt's ids are the ones the
    server makes of the chat, and the answer's text is the server's own decoding of the answer's ids."""
    from engine.backends.tokenizers import load_tokenizer

    embedded = load_tokenizer("embedded")
    with ThreadedFaultServer(FaultConfig(tokenizer_dialect=dialect, max_model_len=4096)) as server:
        sampler = await open_sampler(BackendSettings(backend="openai", base_url=server.base_url, model="synthetic"))
        try:
            assert isinstance(sampler.tokenizer, ServerTokenizer) and sampler.tokenizer.dialect == dialect
            assert sampler.max_sequence_tokens == 4096  # vLLM's max_model_len, read from /v1/models
            messages = [Message("system", "Be brief."), Message("user", "What is 2+2? 日本")]
            ids = sampler.render_chat(messages)
            assert ids == embedded.render(messages)
            continuation = (await sampler.sample(SampleRequest(tuple(ids), n=1, max_tokens=6, temperature=1.0,
                                                               seed=3)))[0]
            assert sampler.detokenize(continuation.token_ids) == embedded.decode(continuation.token_ids)
            assert sampler.tokenize(" hello world") == embedded.encode(" hello world")
        finally:
            await sampler.aclose()


def test_a_server_without_tokenizer_routes_falls_back_to_the_hub_name_and_says_both():
    with ThreadedFaultServer(FaultConfig()) as server:
        done = run_cli("run", "--backend", "openai", "--base-url", server.base_url, "--model", "no-such/model",
                       "--prompt", "hi", env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no tokenizer of its own" in done.stderr and "--tokenizer" in done.stderr


def test_the_xai_key_is_read_for_xai_urls(monkeypatch):
    monkeypatch.setenv("XAI_API_KEY", "xai-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert BackendSettings(backend="openai", base_url="https://api.x.ai/v1", model="m").api_key() == "xai-test"
    assert BackendSettings(backend="openai", base_url="http://h/v1", model="m").api_key() == "sk-test"


@pytest.mark.parametrize("fault_server", [FaultConfig(token_prompts=False, eos_piece="<|im_end|>", eos_rate=0.3,
                                                      top_logprobs_cap=20)], indirect=True)
@pytest.mark.parametrize("strategy", ["smc", "mcmc"])
async def test_a_text_server_naming_the_end_token_by_its_string_keeps_searches_alive(fault_server, strategy):
    """The held-out server: `<|im_end|>` in logprobs.tokens, absent from the text. Its string is ours to read."""
    sampler = await open_sampler(openai_settings(fault_server.base_url))
    try:
        search = SearchSettings(prompt="hi", strategy=strategy, particles=4, chains=2, mcmc_steps=2, block_tokens=4,
                                max_tokens=12, seed=3)
        results = [await run_search(search.replace(seed=seed), sampler, openai_settings(fault_server.base_url))
                   for seed in range(6)]
    finally:
        await sampler.aclose()
    assert all(r.error is None for r in results), {r.error for r in results}
    assert any(c.finished and c.token_ids[-1] == 2 for r in results for c in r.candidates)  # <|im_end|> is id 2


async def test_proxies_from_the_environment_carry_whole_answers_and_streams_unless_no_proxy_says(
        fault_server, monkeypatch):
    """HTTP_PROXY and NO_PROXY are honoured as the SDK's client reads them, on every path: a whole answer, a
    GET and an event stream."""
    from engine.backends.openai_client import JSONClient
    from tests.forward_proxy import ForwardProxy

    body = {"model": "synthetic", "prompt": [1000, 1001], "max_tokens": 3, "n": 1, "logprobs": 1,
            "return_tokens_as_token_ids": True}
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = JSONClient(fault_server.base_url, None, 4, 30.0)
        try:
            assert (await client.get("/models", 5.0))["data"]
            answer = await client.post("/completions", body)
            events = [event async for event in client.events("/completions", body | {"stream": True})]
        finally:
            await client.aclose()
        assert len(answer["choices"][0]["logprobs"]["tokens"]) == 3
        assert sum(len((part.get("logprobs") or {}).get("tokens") or ()) for e in events for part in e["choices"]) == 3
        url = fault_server.base_url
        assert proxy.carried == [("GET", url + "/models"), ("POST", url + "/completions"),
                                 ("POST", url + "/completions")]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = JSONClient(fault_server.base_url, None, 4, 30.0)
        try:
            await client.post("/completions", body)
        finally:
            await client.aclose()
        assert len(proxy.carried) == 3
