"""A stand-in for Tinker's remote sampling service: the one part of the stack tests cannot reach. It answers with
real `tinker.types` objects, computed by any backend of ours (the embedded model, or the enumerable chain)."""

from __future__ import annotations

import numpy as np
from tinker import types
from tinker.types.topk_logprobs import TopkLogprobs

from engine.sampler import SampleRequest


class LocalTinkerClient:
    """Duck-types `tinker.SamplingClient` (`sample`, `compute_logprobs`) with the embedded model behind it.

    `scaled` chooses which of the two disputed behaviours it plays: sample logprobs at the sampling
    temperature (what a maintainer said the backend does), or raw. compute_logprobs answers for sequences it
    sampled, from the log p the model computed while sampling them."""

    def __init__(self, local_sampler, *, scaled: bool = True):
        self.local = local_sampler
        self.scaled = scaled
        self.calls: list[tuple[types.ModelInput, int, types.SamplingParams]] = []
        self.scored: dict[tuple[int, ...], list[float]] = {}

    async def sample(self, prompt: types.ModelInput, num_samples: int, sampling_params: types.SamplingParams,
                     topk_sample_logprobs: int = 0):
        assert isinstance(prompt, types.ModelInput) and isinstance(sampling_params, types.SamplingParams)
        self.calls.append((prompt, num_samples, sampling_params))
        request = SampleRequest(
            tuple(prompt.to_ints()), n=num_samples, max_tokens=sampling_params.max_tokens,
            temperature=sampling_params.temperature, seed=sampling_params.seed, top_logprobs=topk_sample_logprobs,
        )
        continuations = await self.local.sample(request)
        sequences = []
        for index, c in enumerate(continuations):
            self.scored[request.prompt_ids + c.token_ids] = list(c.logprobs)
            reported = c.proposal_logprobs if self.scaled else c.logprobs
            topk = None
            if c.top_logprobs:
                topk = TopkLogprobs(np.array([[t for t, _ in alts] for alts in c.top_logprobs], dtype=np.int32),
                                    np.array([[lp for _, lp in alts] for alts in c.top_logprobs], dtype=np.float32))
            sequences.append(types.SampledSequence(
                stop_reason=c.finish_reason, sequence_id=f"seq-{index}",
                tokens_np=np.array(c.token_ids, dtype=np.int32), logprobs_np=np.array(reported, dtype=np.float32),
                topk_logprobs_np=topk,
            ))
        return types.SampleResponse(sequences=sequences)

    async def compute_logprobs(self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None):
        ids = tuple(prompt.to_ints())
        for end in range(len(ids), 0, -1):
            if ids[:end] in self.scored:
                values = self.scored[ids[:end]]
                return [None] * (len(ids) - len(values)) + values
        raise AssertionError("the stand-in scores only what it sampled")
