"""What a gap between the sequences of a batch costs raw llama.cpp: ms a step and reused graphs.

    python -m benchmarks.sequence_gaps [--steps 10] [--layout repacked]

A bare decode loop on the embedded model, in a context like the local decoder's (16 sequences of 2,048 tokens,
one KV stream each), decodes one token per sequence per step for several sets of sequences: contiguous ranges,
and the same counts with gaps, as when a stream in the middle of a batch ends first. The decoder moves streams so
that its batches never have gaps (`BatchDecoder._close_gaps`); this shows why.
"""

from __future__ import annotations

import argparse
import os
import time

from engine.backends.local.gguf import GGUFModel
from engine.backends.local.layout import LAYOUTS, weight_layout
from engine.backends.local.model_file import embedded_model_path, load_llama_cpp
from engine.backends.local.token_batch import TokenBatch
from engine.sampler import Message

SEQUENCES = 16
CASES = (
    ("0..15", range(16)),
    ("0..15 but 5 (one ended)", [s for s in range(16) if s != 5]),
    ("0..14", range(15)),
    ("0..15 but 3 and 9", [s for s in range(16) if s not in (3, 9)]),
    ("0..13", range(14)),
    ("0, 2, .., 14", range(0, 16, 2)),
    ("0..7", range(8)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps timed for each set of sequences")
    parser.add_argument("--layout", choices=LAYOUTS, default=None, help="default: what this CPU probes to")
    args = parser.parse_args()
    layout = args.layout or weight_layout(load_llama_cpp(), embedded_model_path())
    model = GGUFModel(embedded_model_path(), layout=layout)
    llama = model.llama
    prompt = model.encode_prompt(model.chat_prompt([Message("user", "Write a long story about a lighthouse keeper.")]))
    params = llama.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = 2048 * SEQUENCES, SEQUENCES, False
    params.n_batch = params.n_ubatch = 512
    params.n_threads = params.n_threads_batch = os.cpu_count() or 1
    ctx = llama.llama_init_from_model(model.model, params)
    batch = TokenBatch(llama, params.n_batch)
    memory = llama.llama_get_memory(ctx)
    if llama.llama_decode(ctx, batch.fill(prompt, list(range(len(prompt))), [0] * len(prompt),
                                          [False] * (len(prompt) - 1) + [True])):
        raise SystemExit("the prompt did not decode")
    for seq in range(1, SEQUENCES):
        llama.llama_memory_seq_cp(memory, 0, seq, -1, -1)
    position = dict.fromkeys(range(SEQUENCES), len(prompt))
    print(f"{layout} weights, {params.n_threads} threads, {args.steps} steps each, after {args.steps} warm-up steps\n")
    print("| sequences in the batch | streams | ms a step | graphs reused |")
    print("|---|---:|---:|---:|")
    for label, seqs in (("warm-up", range(16)), *CASES):
        seqs = list(seqs)
        reused = llama.llama_perf_context(ctx).n_reused
        started = time.perf_counter()
        for _ in range(args.steps):
            if llama.llama_decode(ctx, batch.fill([100] * len(seqs), [position[s] for s in seqs], seqs,
                                                  [True] * len(seqs))):
                raise SystemExit("llama_decode failed")
            for seq in seqs:
                position[seq] += 1
        step_ms = (time.perf_counter() - started) / args.steps * 1000
        if label != "warm-up":
            reused = llama.llama_perf_context(ctx).n_reused - reused
            print(f"| {label} | {len(seqs)} | {step_ms:.1f} | {reused} of {args.steps} |", flush=True)
    llama.llama_free(ctx)


if __name__ == "__main__":
    main()
