"""The local backend against the raw llama.cpp ceiling, in the same run, at 1, 4, 8 and 16 streams.

    python -m benchmarks.local_throughput [--tokens 128] [--layouts plain,repacked] [--flash-attn off]

Raw, llama.cpp's defaults: a bare decode loop on a context with llama.cpp's default parameters but for its size
and sequence count (so flash attention `auto`, its default batch sizes and cache), the reference a user of
llama.cpp gets. Raw, as ours: llama.cpp's low-level API alone, on the decoding thread, one context per stream count (`n_seq_max` =
streams, a non-unified cache, context sized to the run), every stream holding the same prefilled prompt, one
token per stream per `llama_decode` (one `llama_decode` per token in the one-token layout), no sampling. Ours:
`LocalSampler.sample` with n continuations of the prompt at temperature 1, exact log p and log q for every token.
Each figure comes from a fresh process; raw and ours alternate, so machine drift hits both alike. Weight layouts default to every one
the probe can choose on this CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import numpy as np

from engine.backends.local.backend import LocalSampler
from engine.backends.local.gguf import GGUFModel
from engine.backends.local.layout import PLAIN, REPACKED, REPACKED_ONE_TOKEN, weight_layout
from engine.backends.local.model_file import embedded_model_path, load_llama_cpp
from engine.backends.local.token_batch import TokenBatch
from engine.sampler import Message, SampleRequest

PROMPT = "Write a long story about a lighthouse keeper."
STREAMS = (1, 4, 8, 16)
THREADS = os.cpu_count() or 1


FLASH = {"auto": -1, "off": 0, "on": 1}  # llama.cpp's LLAMA_FLASH_ATTN_TYPE_*


def raw_rate(model: GGUFModel, prompt: list[int], streams: int, tokens: int, flash: str | None) -> float:
    """Tokens per second of bare batched decoding. `flash` None: llama.cpp's default context parameters."""
    llama = model.llama
    params = llama.llama_context_default_params()
    params.n_ctx = (len(prompt) + tokens + 8) * streams
    params.n_seq_max = streams
    if flash is not None:  # as ours
        params.n_batch = params.n_ubatch = max(len(prompt), streams)
        params.kv_unified = False
        params.flash_attn_type = FLASH[flash]
    params.n_threads = params.n_threads_batch = THREADS
    ctx = llama.llama_init_from_model(model.model, params)
    try:
        batch = TokenBatch(llama, params.n_batch)
        one_token = model.layout == REPACKED_ONE_TOKEN

        def decode(tokens, positions, seqs) -> None:
            pieces = zip(tokens, positions, seqs, strict=True) if one_token else [(tokens, positions, seqs)]
            for t, p, s in pieces:
                t, p, s = ([t], [p], [s]) if one_token else (t, p, s)
                if llama.llama_decode(ctx, batch.fill(list(t), list(p), list(s), [True] * len(t))) != 0:
                    raise RuntimeError("llama_decode failed")

        decode(prompt, range(len(prompt)), [0] * len(prompt))
        memory = llama.llama_get_memory(ctx)
        for seq in range(1, streams):
            llama.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        token = int(np.argmax(np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx, -1), shape=(model.n_vocab,))))
        started = time.perf_counter()
        for step in range(tokens):
            decode([token] * streams, [len(prompt) + step] * streams, list(range(streams)))
        return streams * tokens / (time.perf_counter() - started)
    finally:
        llama.llama_free(ctx)


async def our_rate(layout: str, prompt_text: str, streams: int, tokens: int, flash: str) -> float:
    sampler = LocalSampler(threads=THREADS, layout=layout, n_seq_max=max(STREAMS), flash_attn=flash)
    await sampler.start()
    prompt = sampler.render_chat([Message("user", prompt_text)])
    await sampler.sample(SampleRequest(tuple(prompt), n=1, max_tokens=4, temperature=1.0, seed=0))  # warm
    started = time.perf_counter()
    continuations = await sampler.sample(
        SampleRequest(tuple(prompt), n=streams, max_tokens=tokens, temperature=1.0, seed=streams))
    elapsed = time.perf_counter() - started
    await sampler.aclose()
    assert all(len(c.logprobs) == len(c.proposal_logprobs) == len(c.token_ids) for c in continuations)
    return sum(len(c.token_ids) for c in continuations) / elapsed


def one(kind: str, layout: str, streams: int, tokens: int, flash: str) -> float:
    """One measurement in this (fresh) process: a model's OpenMP team belongs to the thread that first ran it."""
    if kind == "ours":
        return asyncio.run(our_rate(layout, PROMPT, streams, tokens, flash))
    model = GGUFModel(embedded_model_path(), layout=layout)
    prompt = model.encode_prompt(model.chat_prompt([Message("user", PROMPT)]))
    return raw_rate(model, prompt, streams, tokens, None if kind == "defaults" else flash)


def in_child(kind: str, layout: str, streams: int, tokens: int, flash: str) -> float:
    command = [sys.executable, "-m", "benchmarks.local_throughput", "--one", kind, layout, str(streams),
               str(tokens), flash]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    probed = weight_layout(load_llama_cpp(), embedded_model_path())
    choosable = [PLAIN, REPACKED, REPACKED_ONE_TOKEN] if probed == REPACKED else sorted({probed, PLAIN})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream")
    parser.add_argument("--layouts", default=",".join(choosable))
    parser.add_argument("--repeats", type=int, default=2, help="best of this many, raw and ours alternating")
    parser.add_argument("--flash-attn", choices=FLASH, default="off", help="ours, and raw as ours")
    parser.add_argument("--one", nargs=5, metavar=("KIND", "LAYOUT", "STREAMS", "TOKENS", "FLASH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, layout, streams, tokens, flash = args.one
        print(one(kind, layout, int(streams), int(tokens), flash))
        return
    print(f"{THREADS} threads, {args.tokens} tokens per stream, best of {args.repeats}, SmolLM2-135M-Instruct Q4_1; "
          f"this CPU probes to {probed}; flash attention {args.flash_attn} (ours, and raw as ours)\n")
    print("| weights | streams | raw, llama.cpp defaults | raw, as ours | beamtui local | ours / defaults | "
          "ours / as ours |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for layout in args.layouts.split(","):
        for streams in STREAMS:
            rates = dict.fromkeys(("defaults", "raw", "ours"), 0.0)
            for _ in range(args.repeats):  # best of: this VM's speed wanders by +-20% from run to run
                for kind in rates:
                    rates[kind] = max(rates[kind], in_child(kind, layout, streams, args.tokens, args.flash_attn))
            print(f"| {layout} | {streams} | {rates['defaults']:.1f} | {rates['raw']:.1f} | {rates['ours']:.1f} | "
                  f"{rates['ours'] / rates['defaults']:.2f} | {rates['ours'] / rates['raw']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
