"""The local backend against the raw llama.cpp ceiling, in the same run, at 1, 4, 8 and 16 streams.

    python -m benchmarks.local_throughput [--tokens 128] [--layouts plain,repacked] [--flash-attn auto]
        [--repeats 5]

Raw, llama.cpp's defaults: a bare decode loop on a context with llama.cpp's default parameters (flash attention
`auto`, its batch sizes, its 512-token context a sequence; more if the run needs it), the reference a user of
llama.cpp gets. Raw, tight context: the same sized to the run, the fastest context llama.cpp has for it (llama.cpp
attends over at least 256 cells of a larger context; at 96 tokens a sequence holds ~140). Both prefill the prompt
once, copy it to every stream, decode one token per stream per `llama_decode` (one `llama_decode` per token in the
one-token layout) and sample nothing; each is timed from the first decoded token and, for the end-to-end
comparison, from the prompt's prefill. Ours: `LocalSampler.sample` with n continuations of the (cached) prompt at
temperature 1, exact log p and log q for every token, in its 2,048-token context a sequence.
End to end: `beamtui run --beam-width 1 --n-per-beam N --block-tokens T --max-tokens T --temperature 1 --json`,
completion tokens over the search's wall time (the prompt's prefill included; the model's load is not, see
`benchmarks.startup`).

Each figure comes from a fresh process. A repeat measures every kind once, in an order that rotates from repeat to
repeat; a ratio is the median over repeats of the ratio within one repeat, so the slow drift of a shared VM's speed
(+-20% here from minute to minute) hits both sides of it alike. Weight layouts default to every one the probe can
choose on this CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from engine.backends.local.backend import LocalSampler
from engine.backends.local.gguf import GGUFModel
from engine.backends.local.layout import LAYOUT_ENV, PLAIN, REPACKED, REPACKED_ONE_TOKEN, weight_layout
from engine.backends.local.model_file import embedded_model_path, load_llama_cpp
from engine.backends.local.token_batch import TokenBatch
from engine.sampler import Message, SampleRequest

PROMPT = "Write a long story about a lighthouse keeper."
STREAMS = (1, 4, 8, 16)
KINDS = ("defaults", "tight", "ours", "run")
THREADS = os.cpu_count() or 1


FLASH_ATTN = ("auto", "on", "off")
DEFAULT_CONTEXT = 512  # llama_context_default_params().n_ctx: llama.cpp's context for one sequence


def raw_rates(model: GGUFModel, prompt: list[int], streams: int, tokens: int, context: str) -> dict[str, float]:
    """Tokens per second of bare batched decoding, without and with the prompt's prefill.

    `context` "defaults": llama.cpp's default context parameters, its 512 tokens a sequence (more if the run needs
    them); "tight": the same, sized to the run, the fastest context llama.cpp has for it (under 256 tokens a
    sequence, attention spans only the cells the sequence has).
    """
    llama = model.llama
    needed = len(prompt) + tokens + 8
    params = llama.llama_context_default_params()
    params.n_ctx = (needed if context == "tight" else max(needed, DEFAULT_CONTEXT)) * streams
    params.n_seq_max = streams
    params.n_threads = params.n_threads_batch = THREADS
    ctx = llama.llama_init_from_model(model.model, params)
    try:
        batch = TokenBatch(llama, params.n_batch)
        one_token = model.layout == REPACKED_ONE_TOKEN

        def decode(tokens, positions, seqs, logits) -> None:
            pieces = zip(tokens, positions, seqs, logits, strict=True) if one_token else [
                (tokens, positions, seqs, logits)]
            for t, p, s, out in pieces:
                t, p, s, out = ([t], [p], [s], [out]) if one_token else (t, p, s, out)
                if llama.llama_decode(ctx, batch.fill(list(t), list(p), list(s), list(out))) != 0:
                    raise RuntimeError("llama_decode failed")

        started = time.perf_counter()
        decode(prompt, range(len(prompt)), [0] * len(prompt), [False] * (len(prompt) - 1) + [True])
        memory = llama.llama_get_memory(ctx)
        for seq in range(1, streams):
            llama.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        token = int(np.argmax(np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx, -1), shape=(model.n_vocab,))))
        decoding = time.perf_counter()
        for step in range(tokens):
            decode([token] * streams, [len(prompt) + step] * streams, list(range(streams)), [True] * streams)
        finished = time.perf_counter()
        return {context: streams * tokens / (finished - decoding),
                f"{context}+prefill": streams * tokens / (finished - started)}
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


def run_rate(layout: str, streams: int, tokens: int, flash: str) -> float:
    """Completion tokens over wall time of one `beamtui run`, as its user would time it from the JSON."""
    command = [sys.executable, "-c", "from tui.cli import main; main()", "run", "--prompt", PROMPT,
               "--beam-width", "1", "--n-per-beam", str(streams), "--block-tokens", str(tokens),
               "--max-tokens", str(tokens), "--temperature", "1", "--seed", str(streams), "--flash-attn", flash,
               "--json"]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True,
                                       env=os.environ | {LAYOUT_ENV: layout}).stdout)
    return result["usage"]["completion_tokens"] / result["timing"]["wall_s"]


def one(kind: str, layout: str, streams: int, tokens: int, flash: str) -> dict[str, float]:
    """One measurement in this (fresh) process: a model's OpenMP team belongs to the thread that first ran it."""
    if kind == "ours":
        return {"ours": asyncio.run(our_rate(layout, PROMPT, streams, tokens, flash))}
    if kind == "run":
        return {"run": run_rate(layout, streams, tokens, flash)}
    model = GGUFModel(embedded_model_path(), layout=layout)
    prompt = model.encode_prompt(model.chat_prompt([Message("user", PROMPT)]))
    return raw_rates(model, prompt, streams, tokens, kind)


def in_child(kind: str, layout: str, streams: int, tokens: int, flash: str) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.local_throughput", "--one", kind, layout, str(streams),
               str(tokens), flash]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def median_ratio(rates: dict[str, list[float]], kind: str, reference: str) -> str:
    """The median over rounds of kind / reference within each round, and their range."""
    ratios = [ours / theirs for ours, theirs in zip(rates[kind], rates[reference], strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    probed = weight_layout(load_llama_cpp(), embedded_model_path())
    choosable = [PLAIN, REPACKED, REPACKED_ONE_TOKEN] if probed == REPACKED else sorted({probed, PLAIN})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream")
    parser.add_argument("--layouts", default=",".join(choosable))
    parser.add_argument("--streams", default=",".join(map(str, STREAMS)))
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every kind, in rotating order")
    parser.add_argument("--flash-attn", choices=FLASH_ATTN, default="auto", help="beamtui's setting")
    parser.add_argument("--one", nargs=5, metavar=("KIND", "LAYOUT", "STREAMS", "TOKENS", "FLASH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, layout, streams, tokens, flash = args.one
        print(json.dumps(one(kind, layout, int(streams), int(tokens), flash)))
        return
    print(f"{THREADS} threads, {args.tokens} tokens per stream, medians of {args.repeats} rounds, "
          f"SmolLM2-135M-Instruct Q4_1; this CPU probes to {probed}; beamtui's flash attention {args.flash_attn}\n")
    print("| weights | streams | raw, defaults | raw, tight context | beamtui local | local / defaults | "
          "local / tight | raw, defaults, prefill included | beamtui run | run / defaults |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for layout in args.layouts.split(","):
        for streams in map(int, args.streams.split(",")):
            rates: dict[str, list[float]] = {}
            for repeat in range(args.repeats):
                for kind in KINDS[repeat % len(KINDS):] + KINDS[: repeat % len(KINDS)]:
                    for name, rate in in_child(kind, layout, streams, args.tokens, args.flash_attn).items():
                        rates.setdefault(name, []).append(rate)
            median = {name: statistics.median(values) for name, values in rates.items()}
            print(f"| {layout} | {streams} | {median['defaults']:.1f} | {median['tight']:.1f} | "
                  f"{median['ours']:.1f} | {median_ratio(rates, 'ours', 'defaults')} | "
                  f"{median_ratio(rates, 'ours', 'tight')} | {median['defaults+prefill']:.1f} | "
                  f"{median['run']:.1f} | {median_ratio(rates, 'run', 'defaults+prefill')} |", flush=True)


if __name__ == "__main__":
    main()
