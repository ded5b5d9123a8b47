"""Local backend throughput with exact per-token logprobs, against llama-cpp-python's own paths.

    python -m benchmarks.local_throughput      (from the repository root)

Single stream: one continuation of 256 tokens at temperature 1, logprobs included. Batched: n continuations
of one prompt decoded together. Both are measured in the weight layout this machine probes to and, where
that differs, in the plain one. For comparison, llama-cpp-python's high-level API on the same GGUF and
threads: `create_completion` with `logprobs=1` (needs `logits_all=True`), and plain generation without
logprobs. Each figure is the best of three runs, to keep scheduler noise out.
"""

from __future__ import annotations

import asyncio
import os
import time

import llama_cpp

from engine.sampler import Message, SampleRequest
from engine.backends.local.backend import LocalSampler
from engine.backends.local.layout import PLAIN, weight_layout
from engine.backends.local.model_file import embedded_model_path
from tests.llama_server import server_layout, use_safe_weight_layout

TOKENS = 256
PROMPT = "Write a long story about a lighthouse keeper."
THREADS = os.cpu_count() or 1


async def ours(n: int, layout: str) -> float:
    sampler = LocalSampler(threads=THREADS, layout=layout)
    await sampler.start()
    ids = tuple(sampler.render_chat([Message("user", PROMPT)]))
    best = 0.0
    for attempt in range(3):
        request = SampleRequest(ids, n=n, max_tokens=TOKENS, temperature=1.0, seed=attempt)
        started = time.perf_counter()
        continuations = await sampler.sample(request)
        elapsed = time.perf_counter() - started
        assert all(len(c.logprobs) == len(c.token_ids) for c in continuations)
        best = max(best, sum(len(c.token_ids) for c in continuations) / elapsed)
    await sampler.aclose()
    return best


def high_level(logprobs: bool) -> float:
    llm = llama_cpp.Llama(str(embedded_model_path()), n_ctx=2048, n_threads=THREADS, logits_all=logprobs,
                          verbose=False)
    prompt = llm.tokenize(f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n".encode(), special=True)
    best = 0.0
    for attempt in range(3):
        started = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=TOKENS, temperature=1.0, seed=attempt,
                                    logprobs=1 if logprobs else None)
        best = max(best, out["usage"]["completion_tokens"] / (time.perf_counter() - started))
    return best


def main() -> None:
    print(f"{THREADS} threads, {TOKENS} tokens per continuation, SmolLM2-135M-Instruct Q4_1\n")
    print("| path | weights | streams | logprobs | tokens/s |")
    print("|---|---|---:|---|---:|")
    probed = weight_layout(llama_cpp, embedded_model_path())
    for layout in dict.fromkeys((probed, PLAIN)):
        for n in (1, 4, 8, 16):
            rate = asyncio.run(ours(n, layout))
            print(f"| beamtui local backend | {layout} | {n} | exact, every token | {rate:.1f} |", flush=True)
    use_safe_weight_layout(embedded_model_path())
    layout = server_layout(embedded_model_path())
    print(f"| llama-cpp-python create_completion | {layout} | 1 | logprobs=1 | {high_level(True):.1f} |")
    print(f"| llama-cpp-python create_completion | {layout} | 1 | none | {high_level(False):.1f} |")


if __name__ == "__main__":
    main()
