"""Search and gen against the hostile loopback endpoint, with the fault mix the reliability tests use.

    python -m benchmarks.chaos      (from the repository root; about a minute)

Faults per request: 20% 429 (Retry-After 0.2 s), 5% 500, 5% 503, 3% hangs past the 1 s timeout, 2% truncated
JSON bodies, 2% connections reset mid-response; 50 ms per answer. Cap 8, up to 8 retries for the search and 2 for gen.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.backends.factory import open_sampler
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent
CHAOS = dict(rate_429=0.20, rate_500=0.05, rate_503=0.05, rate_hang=0.03, rate_malformed=0.02, rate_reset=0.02,
             retry_after=0.2, hang_s=30, latency=0.05, seed=11)


def faults(server) -> str:
    injected = server.stats.injected
    return ", ".join(f"{kind} {count}" for kind, count in sorted(injected.items())) + f" (total {injected.total()})"


async def search(server) -> None:
    limits = BackendSettings(backend="openai", base_url=server.base_url, model="synthetic", tokenizer="embedded",
                             max_concurrent=8, timeout=1.0, max_retries=8)
    sampler = await open_sampler(limits)
    for name, value in CHAOS.items():  # after the probe: the search itself meets the chaos
        setattr(server.config, name, value)
    server.rng.seed(CHAOS["seed"])
    settings = SearchSettings(prompt="chaos", beam_width=8, n_per_beam=4, block_tokens=8, max_tokens=64, seed=1)
    result = await run_search(settings, sampler, limits)
    await sampler.aclose()
    usage = result.usage
    print("### Beam search: beam_width 8, n_per_beam 4, 8 blocks of 8 tokens\n")
    print(f"- requests sent (attempts): {usage['attempts']}; server saw {server.stats.requests}, "
          f"peak in flight {server.stats.peak_in_flight} (cap 8)")
    print(f"- faults injected: {faults(server)}")
    print(f"- retries {usage['retries']} + requests failed for good {usage['failures']} = "
          f"{usage['retries'] + usage['failures']}")
    print(f"- outcome: {'completed' if result.error is None else 'error: ' + result.error}, answer "
          f"{result.answer.length} tokens, score {result.answer.score:.3f}, wall {result.wall_s:.1f}s\n")


def gen(server, scratch: Path) -> None:
    questions = scratch / "q.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(300)))
    out = scratch / "out.jsonl"
    command = [sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out", str(out),
               "--backend", "openai", "--base-url", server.base_url, "--model", "synthetic", "--tokenizer",
               "embedded", "--max-concurrent", "8", "--timeout", "1", "--max-retries", "2", "--max-tokens", "8",
               "--quiet"]
    server.stats.injected.clear()
    requests_before = server.stats.requests
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    answered = {json.loads(line)["id"] for line in out.read_text().splitlines()}
    errors = scratch / "out.errors.jsonl"
    failed = {json.loads(line)["id"] for line in errors.read_text().splitlines()} if errors.exists() else set()
    print("### gen: 300 questions, max_concurrent 8, max_retries 2\n")
    print(f"- requests the server saw: {server.stats.requests - requests_before}, peak in flight "
          f"{server.stats.peak_in_flight} (cap 8)")
    print(f"- faults injected: {faults(server)}")
    print(f"- summary: {done.stderr.splitlines()[0]}")
    print(f"- outcome: {len(answered)} in the output + {len(failed)} in the errors file = "
          f"{len(answered) + len(failed)} of 300, overlap {len(answered & failed)}; exit code {done.returncode}\n")


def main() -> None:
    with ThreadedFaultServer(FaultConfig()) as server:
        asyncio.run(search(server))
    with ThreadedFaultServer(FaultConfig(**CHAOS)) as server, tempfile.TemporaryDirectory() as scratch:
        gen(server, Path(scratch))


if __name__ == "__main__":
    main()
