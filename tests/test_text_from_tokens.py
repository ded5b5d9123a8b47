"""Every text a user sees is the detokenisation of the whole token sequence, never block texts glued together:
a multi-byte character split across a block boundary must come out whole, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types

from engine.backends.factory import open_sampler
from engine.backends.tinker_sdk import TinkerSampler
from engine.backends.tokenizers import load_tokenizer
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import openai_settings
from tests.fault_server import FaultConfig, ThreadedFaultServer
from tests.synthetic_answers import EOS_TOKEN

ANSWER = "早上好，我的朋友！🙂"  # 17 tokens in SmolLM2's byte-level BPE, most of them partial characters
BLOCKS = (1, 2, 3)


def search(block: int, **changes) -> SearchSettings:
    return SearchSettings(prompt="Translate to Chinese: Good morning, my friend!", beam_width=2, n_per_beam=2,
                          block_tokens=block, max_tokens=24, seed=2, temperature=1.0).replace(**changes)


def shown_texts(result) -> list[str]:
    return [result.answer.text, result.to_json()["answer"]["text"]] + [c.text for c in result.candidates]


@pytest.fixture(scope="module")
def answer_ids() -> tuple[int, ...]:
    ids = tuple(load_tokenizer("embedded").encode(ANSWER))
    assert len(ids) > len(ANSWER)  # some characters really are split over several tokens
    return ids


@pytest.mark.parametrize("block", BLOCKS)
async def test_openai_answers_split_inside_characters_come_out_whole(answer_ids, block):
    with ThreadedFaultServer(FaultConfig(answer_tokens=answer_ids)) as server:
        limits = openai_settings(server.base_url)
        sampler = await open_sampler(limits)
        try:
            result = await run_search(search(block), sampler, limits)
        finally:
            await sampler.aclose()
    assert result.error is None and result.answer.token_ids[:len(answer_ids)] == answer_ids
    assert all(text == ANSWER for text in shown_texts(result))


class ScriptedTinkerClient:
    """Tinker's remote service, played by a script: every sample continues ANSWER's tokens with certainty."""

    def __init__(self, script: tuple[int, ...], eos: int):
        self.script, self.eos = script, eos

    async def sample(self, prompt, num_samples, sampling_params, topk_sample_logprobs=0):
        ids = prompt.to_ints()
        done = max(j for j in range(len(self.script) + 1) if ids[len(ids) - j:] == list(self.script[:j]))
        tokens = [*self.script[done:], self.eos][:sampling_params.max_tokens]
        return types.SampleResponse(sequences=[types.SampledSequence(
            stop_reason="stop" if tokens[-1] == self.eos else "length", sequence_id=f"seq-{index}",
            tokens_np=np.array(tokens, dtype=np.int32), logprobs_np=np.zeros(len(tokens), dtype=np.float32))
            for index in range(num_samples)])

    async def compute_logprobs(self, prompt, prompt_logprobs_last_n=None):  # certain tokens: log p 0
        return [None] + [0.0] * (len(prompt.to_ints()) - 1)


@pytest.mark.parametrize("block", BLOCKS)
async def test_tinker_answers_split_inside_characters_come_out_whole(answer_ids, block):
    tinker = BackendSettings(backend="tinker", model="HuggingFaceTB/SmolLM2-135M-Instruct", tokenizer="embedded")
    sampler = TinkerSampler(model=tinker.model, api_key=None, max_concurrent=8, timeout=30, tokenizer="embedded",
                            sampling_client=ScriptedTinkerClient(answer_ids, EOS_TOKEN))
    await open_sampler(tinker, sampler)
    result = await run_search(search(block), sampler, tinker)
    await sampler.aclose()
    assert result.error is None and result.answer.token_ids[:len(answer_ids)] == answer_ids
    assert all(text == ANSWER for text in shown_texts(result))


@pytest.mark.parametrize("block", BLOCKS)
async def test_local_texts_are_the_whole_sequence_detokenised(local_sampler, block):
    """The real model: what it writes depends on the CPU's float kernels, so the check is the relation itself."""
    result = await run_search(search(block, beam_width=1, n_per_beam=2), local_sampler, BackendSettings())
    assert result.error is None
    for candidate in result.candidates:
        whole = local_sampler.model.decode(candidate.token_ids)
        assert candidate.text == whole and "\ufffd" not in whole.rstrip("\ufffd")
