"""The embedded model, for real: token ids, exact logprobs, batching, prefix reuse, and a free event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import llama_cpp
import numpy as np
import pytest

from engine.backends.local.backend import LocalSampler
from engine.backends.local.kv_sequences import gap_closing_moves
from engine.backends.local.layout import PLAIN, REPACKED, REPACKED_ONE_TOKEN, weight_layout
from engine.backends.local.model_file import embedded_model_path
from engine.backends.local.sampling import next_token_entropy, sample_tokens, top_alternatives
from engine.backends.tempering import estimated_entropy
from engine.errors import BackendError
from engine.sampler import Message, SampleRequest


def prompt_ids(sampler, text="Say something short."):
    return tuple(sampler.render_chat([Message("user", text)]))


async def test_chat_template_comes_from_the_gguf(layout_sampler):
    rendered = layout_sampler.detokenize(prompt_ids(layout_sampler, "Hello"))
    assert "Hello" in rendered and "SmolLM" in rendered  # the template's default system line
    assert layout_sampler.chat_template.startswith("gguf:SmolLM2-135M-Instruct")


def test_prompt_ids_match_llama_cpp_s_own_parse_of_special_tokens():
    """The prompt cut at special tokens with its pieces tokenised once gives llama.cpp's ids exactly: chat
    prompts, special tokens typed by a user, whitespace and scripts around them, and random mixtures."""
    import random

    from engine.backends.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    specials = [text for text, _, _ in tokenizer._specials]
    assert "<|im_start|>" in specials and "<|endoftext|>" in specials
    words = ["Hi", " there", "\n", "  ", "\t", "日本", "é", "42", "?", "<", "|", ">", "im_", "end", *specials]
    rng = random.Random(7)
    texts = ["", "x" * 300, "<|im_end|><|im_end|>", " <|im_start|> ", "<|im_start|>user\n<|im_end|>\n"]
    texts += ["".join(rng.choice(words) for _ in range(rng.randrange(1, 30))) for _ in range(300)]
    for text in texts:
        for prompt in (text, tokenizer.chat_prompt([Message("system", text), Message("user", text)])):
            assert tokenizer.encode_prompt(prompt) == tokenizer._tokenize(prompt, special=True), repr(prompt)


async def test_sample_returns_n_continuations_with_ids_text_and_logprobs(layout_sampler):
    request = SampleRequest(prompt_ids(layout_sampler), n=3, max_tokens=8, temperature=1.0, seed=11)
    continuations = await layout_sampler.sample(request)
    assert len(continuations) == 3
    for c in continuations:
        assert 1 <= len(c.token_ids) <= 8
        assert len(c.logprobs) == len(c.token_ids)
        assert all(lp <= 0.0 for lp in c.logprobs) and any(lp < 0.0 for lp in c.logprobs)
        assert c.finish_reason in ("stop", "length")
        assert c.finish_reason == "length" or len(c.token_ids) < 8 or c.token_ids[-1] in (1, 2)
        assert layout_sampler.detokenize(c.token_ids) == c.text


async def test_logprobs_are_the_model_distribution_at_temperature_one(layout_sampler):
    """Logprobs are log p under the model, whatever proposal temperature drew the token: the greedy token has
    the highest first-token logprob of all, and the same tokens drawn cold or hot score the same."""
    ids = prompt_ids(layout_sampler, "Count: one, two,")
    greedy = (await layout_sampler.sample(SampleRequest(ids, 1, 4, temperature=0.0, seed=1)))[0]
    cold = (await layout_sampler.sample(SampleRequest(ids, 1, 4, temperature=0.01, seed=1)))[0]
    assert cold.token_ids == greedy.token_ids
    assert cold.logprobs == pytest.approx(greedy.logprobs, abs=1e-5)
    hot = await layout_sampler.sample(SampleRequest(ids, 12, 1, temperature=1.0, seed=2))
    assert all(c.logprobs[0] <= greedy.logprobs[0] + 1e-6 for c in hot)
    assert len({c.token_ids for c in hot}) > 1
    # Probabilities of distinct first tokens can never add up to more than one.
    assert sum(np.exp(lp) for lp in {c.token_ids[0]: c.logprobs[0] for c in hot}.values()) <= 1.0 + 1e-6


def sample_one(logits: np.ndarray, temperature: float, uniform: float) -> tuple[int, float, float]:
    tokens, log_p, log_q = sample_tokens(logits[None, :], np.array([temperature]), np.array([uniform]))
    return int(tokens[0]), float(log_p[0]), float(log_q[0])


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sample_tokens_draws_from_the_tempered_distribution_with_exact_log_p_and_log_q(temperature):
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = (np.log(probs) + 3.0).astype(np.float32)  # raw logits: any shift
    rng = np.random.default_rng(0)
    draws = [sample_one(logits, temperature, rng.random()) for _ in range(8000)]
    counts = np.bincount([token for token, _, _ in draws], minlength=4)
    tempered = probs ** (1 / temperature) / (probs ** (1 / temperature)).sum()
    assert counts / counts.sum() == pytest.approx(tempered, abs=0.02)
    for token, log_p, log_q in draws[:20]:
        assert log_p == pytest.approx(np.log(probs[token]), abs=1e-6)
        assert log_q == pytest.approx(np.log(tempered[token]), abs=1e-6)


def test_sample_tokens_draws_across_blocks_in_proportion():
    """A vocabulary of several blocks and a ragged last one: each token comes up as often as its probability."""
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal(700) * 2).astype(np.float32)
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    uniforms = rng.random(40000)
    tokens, _, _ = sample_tokens(np.repeat(logits[None, :], len(uniforms), axis=0), np.ones(len(uniforms)), uniforms)
    expected = np.searchsorted(np.cumsum(probs), uniforms, side="right")  # the exact inverse CDF
    assert np.mean(tokens == expected) > 0.999


def test_sample_tokens_over_a_real_sized_vocabulary_matches_a_float64_log_softmax():
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(49152) * 4).astype(np.float32)
    exact = logits.astype(np.float64)
    for temperature in (1.0, 0.25):
        token, log_p, log_q = sample_one(logits, temperature, 0.37)
        log_softmax = exact - exact.max() - np.log(np.exp(exact - exact.max()).sum())
        scaled = exact / temperature
        log_tempered = scaled - scaled.max() - np.log(np.exp(scaled - scaled.max()).sum())
        assert log_p == pytest.approx(log_softmax[token], abs=1e-5)
        assert log_q == pytest.approx(log_tempered[token], abs=1e-5)
    token, log_p, log_q = sample_one(logits, 0.0, 0.99)
    assert token == int(np.argmax(logits)) and log_q == 0.0
    assert log_p == pytest.approx(log_softmax[token], abs=1e-5)
    alternatives = top_alternatives(logits, 3)
    assert [t for t, _ in alternatives] == list(np.argsort(-exact)[:3])
    assert [lp for _, lp in alternatives] == pytest.approx(log_softmax[[t for t, _ in alternatives]], abs=1e-5)


def test_next_token_entropy_is_the_row_s_softmax_entropy_and_top_alternatives_estimate_it():
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal(49152) * 4).astype(np.float32)
    exact = logits.astype(np.float64)
    probs = np.exp(exact - exact.max())
    probs /= probs.sum()
    assert next_token_entropy(logits) == pytest.approx(-float(np.sum(probs * np.log(probs))), rel=1e-9)
    # Over every token, the estimate from alternatives is exact; a token of probability 0 adds nothing.
    small = np.log(np.array([0.5, 0.3, 0.2]))
    assert estimated_entropy([*small, -np.inf]) == pytest.approx(-float(np.sum(np.exp(small) * small)))
    # Processed log q at temperature 0.5, scaled back by it, gives the raw distribution's entropy.
    tempered = small / 0.5 - np.log(np.sum(np.exp(small / 0.5)))
    assert estimated_entropy(list(tempered), 0.5) == pytest.approx(estimated_entropy(list(small)))


async def test_continuations_carry_each_position_s_exact_entropy_when_asked(layout_sampler):
    ids = prompt_ids(layout_sampler, "Write a word.")
    plain, = await layout_sampler.sample(SampleRequest(ids, 1, 6, temperature=0.5, seed=5))
    asked, = await layout_sampler.sample(SampleRequest(ids, 1, 6, temperature=0.5, seed=5, entropies=True,
                                                       top_logprobs=20))
    assert plain.entropies is None and asked.token_ids == plain.token_ids
    assert len(asked.entropies) == len(asked.token_ids) and not asked.entropies_estimated
    for entropy, alternatives in zip(asked.entropies, asked.top_logprobs, strict=True):
        top = np.array([lp for _, lp in alternatives])
        # The whole row's entropy is at least the top 20's share of it, and at most log(vocabulary).
        assert -float(np.sum(np.exp(top) * top)) - 1e-6 <= entropy <= np.log(49152)


@pytest.mark.parametrize("vocab", [49152, 50257])
def test_a_row_samples_the_same_to_the_bit_whatever_rows_share_its_step(vocab):
    rng = np.random.default_rng(vocab)
    logits = (rng.standard_normal((9, vocab)) * 4).astype(np.float32)
    temperatures = np.array([1.0, 0.25, 0.0, 1.0, 2.0, 1.0, 0.7, 1.0, 1.0])
    uniforms = rng.random(9)
    together = sample_tokens(logits, temperatures, uniforms)
    for row in range(9):
        alone = sample_tokens(logits[row: row + 1], temperatures[row: row + 1], uniforms[row: row + 1])
        assert [float(part[0]) for part in alone] == [float(part[row]) for part in together]


async def test_seeded_sampling_is_reproducible_and_seeds_differ(layout_sampler):
    ids = prompt_ids(layout_sampler, "Write a word.")
    first = await layout_sampler.sample(SampleRequest(ids, 2, 6, temperature=1.5, seed=5))
    again = await layout_sampler.sample(SampleRequest(ids, 2, 6, temperature=1.5, seed=5))
    other = await layout_sampler.sample(SampleRequest(ids, 2, 6, temperature=1.5, seed=6))
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.logprobs for c in first] == [c.logprobs for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]


async def test_batching_does_not_change_results(layout_sampler):
    """The same request alone and alongside others gives the same tokens and logprobs to the bit."""
    ids = prompt_ids(layout_sampler, "Explain in three sentences why the sky is blue.")
    request = SampleRequest(ids, 2, 6, temperature=0.5, seed=9)
    alone = await layout_sampler.sample(request)
    crowd = await asyncio.gather(*(layout_sampler.sample(request) for _ in range(4)),
                                 layout_sampler.sample(SampleRequest(ids[:-3], 3, 6, 0.5, seed=1)))
    for batch in crowd[:4]:
        assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
        assert [c.logprobs for c in batch] == [c.logprobs for c in alone]


async def test_a_beam_extension_reuses_its_cached_prefix(layout_sampler):
    ids = prompt_ids(layout_sampler, "List three fruits.")
    first = (await layout_sampler.sample(SampleRequest(ids, 1, 6, temperature=0.0, seed=1)))[0]
    before = layout_sampler.prefix_tokens_reused
    extended = ids + first.token_ids
    second = (await layout_sampler.sample(SampleRequest(extended, 1, 6, temperature=0.0, seed=1)))[0]
    assert layout_sampler.prefix_tokens_reused - before == len(extended) - 1
    whole = (await layout_sampler.sample(SampleRequest(ids, 1, 12, temperature=0.0, seed=1)))[0]
    assert first.token_ids + second.token_ids == whole.token_ids[: len(first.token_ids) + len(second.token_ids)]
    assert first.logprobs + second.logprobs == pytest.approx(whole.logprobs[:12], abs=1e-4)


async def test_requests_sharing_a_long_prompt_prefill_it_once(layout_sampler):
    """gen's shape: questions under one long system prompt arrive together. The first prefills it, the rest
    copy it, and nobody's tokens or logprobs change."""
    system = "You are a patient tutor of lighthouse history. Answer in one short sentence, plainly. " * 3
    questions = ["Who kept the first lighthouse?", "Why are lighthouses tall?", "What powers a lighthouse?"]
    requests = [
        SampleRequest(tuple(layout_sampler.render_chat([Message("system", system), Message("user", q)])),
                      1, 6, temperature=0.7, seed=i)
        for i, q in enumerate(questions)
    ]
    shared = len(os.path.commonprefix([r.prompt_ids for r in requests]))
    assert shared > 32
    before = layout_sampler.prefix_tokens_reused
    together = await asyncio.gather(*(layout_sampler.sample(r) for r in requests))
    assert layout_sampler.prefix_tokens_reused - before >= 2 * shared
    for request, result in zip(requests, together, strict=True):
        alone = await layout_sampler.sample(request)
        assert [c.token_ids for c in result] == [c.token_ids for c in alone]
        assert [c.logprobs for c in result] == [c.logprobs for c in alone]


async def test_decoding_runs_off_the_event_loop(layout_sampler):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await layout_sampler.sample(SampleRequest(prompt_ids(layout_sampler), 4, 24, temperature=1.0, seed=2))
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed > 0.1
    assert ticks >= 0.5 * elapsed / 0.01  # the loop kept ticking at least half the time


async def test_cancelled_request_frees_its_sequences(layout_sampler):
    ids = prompt_ids(layout_sampler)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await layout_sampler.sample(SampleRequest(ids, 8, 200, temperature=1.0, seed=3))
    # All sequences come back: a request using every one of them still runs.
    n = layout_sampler.n_seq_max
    result = await layout_sampler.sample(SampleRequest(ids, n, 2, temperature=1.0, seed=4))
    assert len(result) == n


async def test_oversized_requests_fail_clearly(layout_sampler):
    ids = prompt_ids(layout_sampler)
    with pytest.raises(BackendError, match="exceed the local context"):
        await layout_sampler.sample(SampleRequest(ids, 1, 100_000, temperature=1.0))
    with pytest.raises(BackendError, match="parallel sequences"):
        await layout_sampler.sample(SampleRequest(ids, 1000, 2, temperature=1.0))


async def test_stop_strings_end_a_continuation(layout_sampler):
    ids = prompt_ids(layout_sampler, "Write the words one, two and three, separated by commas.")
    free = (await layout_sampler.sample(SampleRequest(ids, 1, 24, temperature=0.0)))[0]
    assert "," in free.text
    stopped = (await layout_sampler.sample(SampleRequest(ids, 1, 24, temperature=0.0, stop=(",",))))[0]
    assert stopped.finish_reason == "stop" and "," not in stopped.text
    assert free.text.startswith(stopped.text)


def test_weight_layout_is_probed_once_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("BEAMTUI_WEIGHTS", raising=False)  # this test is of the probe, not of a forced layout
    model = embedded_model_path()
    layout = weight_layout(llama_cpp, model)
    assert layout in (PLAIN, REPACKED, REPACKED_ONE_TOKEN)
    if not list(tmp_path.rglob("weight-layout.json")):
        assert layout == REPACKED  # no AMX here: nothing can crash, so nothing was probed
        return

    def no_second_probe(*args, **kwargs):
        raise AssertionError("the cached verdict should have been used")

    monkeypatch.setattr(subprocess, "run", no_second_probe)
    assert weight_layout(llama_cpp, model) == layout


def test_the_decoder_uses_the_layout_it_was_given(layout_sampler, local_sampler):
    assert layout_sampler.model.layout == layout_sampler.layout
    assert layout_sampler.decoder.one_token_per_decode == (layout_sampler.layout == REPACKED_ONE_TOKEN)
    assert local_sampler.model.layout == weight_layout(llama_cpp, embedded_model_path())


async def test_prefixes_pinned_by_queued_jobs_never_starve_the_job_ahead_of_them(local_sampler):
    """Every idle sequence parked with a cached prefix, then a job for four sequences queued ahead of sixteen
    one-sequence jobs that each pin one: the four-sequence job must still run (it used to wait forever)."""
    def request(index: int, n: int = 1) -> SampleRequest:
        ids = tuple(local_sampler.render_chat([Message("user", f"Count to {index}.")]))
        return SampleRequest(ids, n=n, max_tokens=2, temperature=1.0, seed=index)

    slots = local_sampler.n_seq_max
    await asyncio.gather(*(local_sampler.sample(request(i)) for i in range(slots)))
    head = local_sampler.sample(request(99, n=4))
    queued = [local_sampler.sample(request(i)) for i in range(slots)]
    answers = await asyncio.wait_for(asyncio.gather(head, *queued), timeout=120)
    assert len(answers[0]) == 4 and all(len(a) == 1 for a in answers[1:])


async def test_a_slow_decoder_is_never_cut_off_and_a_stalled_one_is(local_sampler, monkeypatch):
    """A busy machine makes decoding slow, not stuck: a request that takes longer than the timeout but keeps
    decoding is answered on its first attempt; a decoder that stands still for the timeout fails the request."""
    from engine.request_layer import RequestLayer

    decoder = local_sampler.decoder
    real_step = type(decoder)._step
    monkeypatch.setattr(local_sampler, "stall_timeout", 0.4)
    monkeypatch.setattr(decoder, "_step", lambda: (time.sleep(0.05), real_step(decoder)))  # 20 steps a second
    layer = RequestLayer(local_sampler, max_concurrent=4, timeout=0.4, max_retries=3)
    request = SampleRequest(prompt_ids(local_sampler), n=2, max_tokens=24, temperature=1.0, seed=5)
    started = time.perf_counter()
    continuations = await layer.sample(request)
    assert time.perf_counter() - started > 1.0  # well past the 0.4 s timeout
    assert len(continuations) == 2 and layer.stats.retries == 0 and layer.stats.failures == 0

    monkeypatch.setattr(decoder, "_step", lambda: (time.sleep(1.0), real_step(decoder)))  # stands still
    with pytest.raises(BackendError, match="made no progress for 0.4s"):
        await RequestLayer(local_sampler, max_concurrent=4, timeout=0.4, max_retries=0).sample(request)
    monkeypatch.setattr(decoder, "_step", lambda: real_step(decoder))
    await asyncio.sleep(1.2)  # the cancelled request's sequences come back at the decoder's next step


@pytest.mark.parametrize(("running", "blocked", "idle", "moves"), [
    ({0, 1, 2}, set(), set(), []),  # already one range
    ({3, 4, 5}, set(), {0, 1}, []),  # one range need not start at 0
    ({0, 1, 3, 4}, set(), {2}, [(4, 2)]),  # a stream finished in the middle
    ({0, 5, 6, 7}, set(), set(), [(0, 4)]),  # the fewest moves
    ({0, 2}, set(), {1}, [(0, 3)]),  # as few moves, and no idle prefix displaced
    ({0, 1, 3, 4}, {2}, set(), [(0, 5), (1, 6)]),  # never into a sequence a starting job holds
    ({0, 2, 4, 6}, {1, 3, 5, 7}, set(), []),  # no range open
])
def test_gap_closing_moves(running, blocked, idle, moves):
    assert gap_closing_moves(running, blocked, idle, size=8) == moves


def test_a_stream_that_ends_in_the_middle_of_the_batch_leaves_no_gap():
    """Three requests decoded together, the middle one ending first: the last request's stream moves into its
    sequence, so llama.cpp keeps reusing the step's graph, and nobody's tokens or logprobs change."""
    layout = weight_layout(llama_cpp, embedded_model_path())
    # One token a decode has no batch to keep together; the plain layout batches on every CPU.
    sampler = LocalSampler(threads=2, layout=PLAIN if layout == REPACKED_ONE_TOKEN else layout)

    async def scenario():
        await sampler.start()
        ids = prompt_ids(sampler, "Write a long story about a lighthouse keeper.")
        requests = [SampleRequest(ids, 2, 16, temperature=0.7, seed=1),  # sequences 0 and 1
                    SampleRequest(ids, 1, 2, temperature=0.7, seed=2),  # sequence 2, done after two tokens
                    SampleRequest(ids, 2, 16, temperature=0.7, seed=3)]  # sequences 3 and 4
        reused = sampler.model.llama.llama_perf_context(sampler.decoder.ctx).n_reused
        together = await asyncio.gather(*(sampler.sample(r) for r in requests))
        reused = sampler.model.llama.llama_perf_context(sampler.decoder.ctx).n_reused - reused
        parked = dict(sampler.decoder.sequences.cached)
        alone = [await sampler.sample(r) for r in requests]
        await sampler.aclose()
        return ids, together, alone, reused, parked

    ids, together, alone, reused, parked = asyncio.run(scenario())
    for mixed, single in zip(together, alone, strict=True):
        assert [c.token_ids for c in mixed] == [c.token_ids for c in single]
        assert [c.logprobs for c in mixed] == [c.logprobs for c in single]
    last = together[2]
    assert parked[2] in [ids + c.token_ids[:-1] for c in last]  # a stream of the last request moved from 4 to 2
    assert reused >= 10  # 13 of 17 steps here; 0 with the gap left open
