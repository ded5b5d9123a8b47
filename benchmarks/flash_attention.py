"""Whether the local decoder's results stay the same alone and batched with flash attention off, on and auto.

    python -m benchmarks.flash_attention      (from the repository root; about a minute)

The samplers need log p and log q from the same logits row, and the same request must give the same tokens and
logprobs whatever else is decoded beside it (tests/test_local_backend.py checks this to the bit with the
default). For each setting: a request alone, then the same request four times among others, as that test does.
Speed: benchmarks/local_throughput.py --flash-attn; agreement with llama.cpp's server:
benchmarks/logprob_agreement.py --flash-attn, --server-flash-attn.
"""

from __future__ import annotations

import asyncio

from engine.backends.local.backend import LocalSampler
from engine.sampler import Message, SampleRequest

PROMPTS = ("Explain in three sentences why the sky is blue.", "List three fruits.", "Write a haiku about rain.")


async def invariance(flash: str) -> tuple[int, int, float]:
    """(requests identical to the bit, requests compared, largest logprob difference) for one setting."""
    sampler = LocalSampler(threads=2, flash_attn=flash)
    await sampler.start()
    same = total = 0
    worst = 0.0
    try:
        for text in PROMPTS:
            ids = tuple(sampler.render_chat([Message("user", text)]))
            request = SampleRequest(ids, 2, 16, temperature=0.5, seed=9)
            alone = await sampler.sample(request)
            crowd = await asyncio.gather(*(sampler.sample(request) for _ in range(4)),
                                         sampler.sample(SampleRequest(ids[:-3], 3, 16, 0.5, seed=1)))
            for batch in crowd[:4]:
                total += 1
                same += [c.token_ids for c in batch] == [c.token_ids for c in alone] and \
                    [c.logprobs for c in batch] == [c.logprobs for c in alone]
                for ours, theirs in zip(batch, alone, strict=True):
                    for a, b in zip(ours.logprobs, theirs.logprobs, strict=False):
                        worst = max(worst, abs(a - b))
    finally:
        await sampler.aclose()
    return same, total, worst


def main() -> None:
    print("| flash attention | identical alone and batched | largest logprob difference |")
    print("|---|---:|---:|")
    for flash in ("off", "on", "auto"):
        same, total, worst = asyncio.run(invariance(flash))
        print(f"| {flash} | {same}/{total} | {worst:.2e} |", flush=True)


if __name__ == "__main__":
    main()
