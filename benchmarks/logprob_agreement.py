"""How far llama.cpp's own OpenAI server and beamtui's decoder disagree on the same GGUF, per token.

    python -m benchmarks.logprob_agreement [--flash-attn off] [--server-flash-attn]     (about a minute)

Starts `python -m llama_cpp.server` on 127.0.0.1 with the embedded model, sends it greedy completions of a
dozen prompts (16 tokens each), and computes the same continuations in beamtui's local decoder, in the layout
the server can run and in the plain one. The two implementations take different kernel paths (the server
prefills the prompt in one batch; our decoder decodes the last prompt token on its own, and may use other
weight layouts), so their float rounding differs and grows through 30 layers. The figures set the tolerance of
tests/test_openai_backend.py's agreement test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.backends.factory import open_sampler
from engine.backends.local.backend import LocalSampler
from engine.backends.local.layout import PLAIN
from engine.backends.local.model_file import embedded_model_path
from engine.sampler import Message, SampleRequest
from engine.settings import BackendSettings
from tests.conftest import free_port
from tests.llama_server import server_layout

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = (
    "What is the capital of France?", "Name three fruits.", "Why is the sky blue?", "Count to five.",
    "Write a haiku about rain.", "What is 12 plus 7?", "Give me a tip for sleeping well.", "Who wrote Hamlet?",
    "Describe a cat in one sentence.", "What is photosynthesis?", "Translate 'good morning' to French.",
    "List two prime numbers.",
)
TOKENS = 16


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def compare(base_url: str, layout: str, flash: str) -> tuple[list[float], int, int]:
    remote = await open_sampler(BackendSettings(backend="openai", base_url=base_url, model="smollm2",
                                                tokenizer="embedded"))
    local = LocalSampler(threads=2, layout=layout, flash_attn=flash)
    await local.start()
    diffs, same, total = [], 0, 0
    try:
        for prompt in PROMPTS:
            messages = (Message("user", prompt),)
            ids = tuple(local.render_chat(messages))
            request = SampleRequest(ids, n=1, max_tokens=TOKENS, temperature=0.0, seed=0, messages=messages,
                                    prompt_len=len(ids))
            theirs = (await remote.sample(request))[0]
            ours = (await local.sample(request))[0]
            total += 1
            same += theirs.token_ids == ours.token_ids
            # Compare only where both took the same path: up to the first differing token.
            for a, b, x, y in zip(theirs.token_ids, ours.token_ids, theirs.logprobs, ours.logprobs, strict=False):
                if a != b:
                    break
                diffs.append(abs(x - y))
    finally:
        await remote.aclose()
        await local.aclose()
    return diffs, same, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flash-attn", choices=("auto", "on", "off"), default="off", help="our decoder's")
    parser.add_argument("--server-flash-attn", action="store_true",
                        help="the server's (llama-cpp-python's server runs without it unless told)")
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "tests.llama_server", "--model", str(embedded_model_path()), "--host",
               "127.0.0.1", "--port", str(port), "--logits_all", "true", "--n_ctx", "2048", "--model_alias",
               "smollm2", "--verbose", "false", "--flash_attn", str(args.server_flash_attn).lower()]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        layouts = dict.fromkeys((server_layout(embedded_model_path()), PLAIN))
        print(f"{cpu_name()}, {os.cpu_count()} cores; llama.cpp server in layout "
              f"{server_layout(embedded_model_path())}, flash attention "
              f"{'on' if args.server_flash_attn else 'off'}; ours {args.flash_attn}; {len(PROMPTS)} prompts x "
              f"{TOKENS} greedy tokens\n")
        print("| our decoder's layout | tokens compared | same greedy text | mean abs diff | p99 | max |")
        print("|---|---:|---:|---:|---:|---:|")
        for layout in layouts:
            diffs, same, total = asyncio.run(compare(base_url, layout, args.flash_attn))
            diffs.sort()
            p99 = diffs[min(len(diffs) - 1, int(0.99 * len(diffs)))]
            print(f"| {layout} | {len(diffs)} | {same}/{total} | {statistics.mean(diffs):.4f} | {p99:.4f} | "
                  f"{max(diffs):.4f} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
