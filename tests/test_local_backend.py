"""The embedded model, for real: token ids, exact logprobs, batching, prefix reuse, and a free event loop."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from engine.backends.base import Message, SampleRequest
from engine.backends.local import draw
from engine.errors import BackendError


def prompt_ids(sampler, text="Say something short."):
    return tuple(sampler.render_chat([Message("user", text)]))


async def test_chat_template_comes_from_the_gguf(local_sampler):
    rendered = local_sampler.detokenize(prompt_ids(local_sampler, "Hello"))
    assert "Hello" in rendered and "SmolLM" in rendered  # the template's default system line
    assert local_sampler.chat_template.startswith("gguf:SmolLM2-135M-Instruct")


async def test_sample_returns_n_continuations_with_ids_text_and_logprobs(local_sampler):
    request = SampleRequest(prompt_ids(local_sampler), n=3, max_tokens=8, temperature=1.0, seed=11)
    continuations = await local_sampler.sample(request)
    assert len(continuations) == 3
    for c in continuations:
        assert 1 <= len(c.token_ids) <= 8
        assert len(c.logprobs) == len(c.token_ids)
        assert all(lp <= 0.0 for lp in c.logprobs) and any(lp < 0.0 for lp in c.logprobs)
        assert c.finish_reason in ("stop", "length")
        assert c.finish_reason == "length" or len(c.token_ids) < 8 or c.token_ids[-1] in (1, 2)
        assert local_sampler.detokenize(c.token_ids) == c.text


async def test_logprobs_are_the_model_distribution_at_temperature_one(local_sampler):
    """Logprobs are log p under the model, whatever proposal temperature drew the token: the greedy token has
    the highest first-token logprob of all, and the same tokens drawn cold or hot score the same."""
    ids = prompt_ids(local_sampler, "Count: one, two,")
    greedy = (await local_sampler.sample(SampleRequest(ids, 1, 4, temperature=0.0, seed=1)))[0]
    cold = (await local_sampler.sample(SampleRequest(ids, 1, 4, temperature=0.01, seed=1)))[0]
    assert cold.token_ids == greedy.token_ids
    assert cold.logprobs == pytest.approx(greedy.logprobs, abs=1e-5)
    hot = await local_sampler.sample(SampleRequest(ids, 12, 1, temperature=1.0, seed=2))
    assert all(c.logprobs[0] <= greedy.logprobs[0] + 1e-6 for c in hot)
    assert len({c.token_ids for c in hot}) > 1
    # Probabilities of distinct first tokens can never add up to more than one.
    assert sum(np.exp(lp) for lp in {c.token_ids[0]: c.logprobs[0] for c in hot}.values()) <= 1.0 + 1e-6


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draw_follows_the_tempered_distribution(temperature):
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs).astype(np.float32)
    rng = np.random.default_rng(0)
    counts = np.bincount([draw(logits, temperature, rng) for _ in range(8000)], minlength=4)
    tempered = probs ** (1 / temperature) / (probs ** (1 / temperature)).sum()
    assert counts / counts.sum() == pytest.approx(tempered, abs=0.02)
    assert draw(logits, 0.0, rng) == 0


async def test_seeded_sampling_is_reproducible_and_seeds_differ(local_sampler):
    ids = prompt_ids(local_sampler, "Write a word.")
    first = await local_sampler.sample(SampleRequest(ids, 2, 6, temperature=1.5, seed=5))
    again = await local_sampler.sample(SampleRequest(ids, 2, 6, temperature=1.5, seed=5))
    other = await local_sampler.sample(SampleRequest(ids, 2, 6, temperature=1.5, seed=6))
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.logprobs for c in first] == [c.logprobs for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]


async def test_batching_does_not_change_results(local_sampler):
    """The same request alone and alongside others gives the same tokens and logprobs to the bit."""
    ids = prompt_ids(local_sampler, "Explain in three sentences why the sky is blue.")
    request = SampleRequest(ids, 2, 6, temperature=0.5, seed=9)
    alone = await local_sampler.sample(request)
    crowd = await asyncio.gather(*(local_sampler.sample(request) for _ in range(4)),
                                 local_sampler.sample(SampleRequest(ids[:-3], 3, 6, 0.5, seed=1)))
    for batch in crowd[:4]:
        assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
        assert [c.logprobs for c in batch] == [c.logprobs for c in alone]


async def test_a_beam_extension_reuses_its_cached_prefix(local_sampler):
    ids = prompt_ids(local_sampler, "List three fruits.")
    first = (await local_sampler.sample(SampleRequest(ids, 1, 6, temperature=0.0, seed=1)))[0]
    before = local_sampler.prefix_tokens_reused
    extended = ids + first.token_ids
    second = (await local_sampler.sample(SampleRequest(extended, 1, 6, temperature=0.0, seed=1)))[0]
    assert local_sampler.prefix_tokens_reused - before == len(extended) - 1
    whole = (await local_sampler.sample(SampleRequest(ids, 1, 12, temperature=0.0, seed=1)))[0]
    assert first.token_ids + second.token_ids == whole.token_ids[: len(first.token_ids) + len(second.token_ids)]
    assert first.logprobs + second.logprobs == pytest.approx(whole.logprobs[:12], abs=1e-4)


async def test_decoding_runs_off_the_event_loop(local_sampler):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await local_sampler.sample(SampleRequest(prompt_ids(local_sampler), 4, 24, temperature=1.0, seed=2))
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed > 0.1
    assert ticks >= 0.5 * elapsed / 0.01  # the loop kept ticking at least half the time


async def test_cancelled_request_frees_its_sequences(local_sampler):
    ids = prompt_ids(local_sampler)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await local_sampler.sample(SampleRequest(ids, 8, 200, temperature=1.0, seed=3))
    # All sequences come back: a request using every one of them still runs.
    n = local_sampler.n_seq_max
    result = await local_sampler.sample(SampleRequest(ids, n, 2, temperature=1.0, seed=4))
    assert len(result) == n


async def test_oversized_requests_fail_clearly(local_sampler):
    ids = prompt_ids(local_sampler)
    with pytest.raises(BackendError, match="exceed the local context"):
        await local_sampler.sample(SampleRequest(ids, 1, 100_000, temperature=1.0))
    with pytest.raises(BackendError, match="parallel sequences"):
        await local_sampler.sample(SampleRequest(ids, 1000, 2, temperature=1.0))


async def test_stop_strings_end_a_continuation(local_sampler):
    ids = prompt_ids(local_sampler, "Write the words one, two and three, separated by commas.")
    free = (await local_sampler.sample(SampleRequest(ids, 1, 24, temperature=0.0)))[0]
    assert "," in free.text
    stopped = (await local_sampler.sample(SampleRequest(ids, 1, 24, temperature=0.0, stop=(",",))))[0]
    assert stopped.finish_reason == "stop" and "," not in stopped.text
    assert free.text.startswith(stopped.text)
