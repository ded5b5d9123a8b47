"""Time to first request: `beamtui run` and `beamtui gen` on the openai backend with a local tokenizer.

    python -m benchmarks.startup [--repeats 5]      (from the repository root)

A loopback endpoint (tests/fault_server.py) answers after 0.5 s and notes when each request arrives. For each
command, from the moment the process is spawned: when the first start-up probe arrives (imports, settings, the
tokenizer), and when the first request of the work itself arrives (the probes run together, so this should be
the first figure plus one probe round trip). Then gen's steady throughput: 300 questions at cap 50.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent
LATENCY_S = 0.5
ENDPOINT = ("--backend", "openai", "--model", "synthetic", "--tokenizer", "embedded")


def first_requests(command: list[str], server) -> tuple[float, float]:
    """(spawn → first probe, spawn → first request after the probes), in seconds."""
    server.stats.arrivals.clear()
    spawned = time.time()
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    arrivals = server.stats.arrivals
    first_probe = arrivals[0]
    first_work = next(t for t in arrivals if t >= first_probe + LATENCY_S * 0.9)  # after a probe's answer
    return first_probe - spawned, first_work - spawned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, ThreadedFaultServer(FaultConfig(latency=LATENCY_S)) as server:
        questions = Path(scratch) / "q.txt"
        questions.write_text("".join(f"Question {i}: what is {i} plus {i}?\n" for i in range(300)))
        base = [sys.executable, "-m", "tui.cli"]
        commands = {
            "run": [*base, "run", *ENDPOINT, "--base-url", server.base_url, "--prompt", "hi", "--max-tokens", "4",
                    "--block-tokens", "4", "--json"],
            "gen": [*base, "gen", *ENDPOINT, "--base-url", server.base_url, "--questions", str(questions),
                    "--max-tokens", "16", "--max-concurrent", "50", "--quiet"],
        }
        print(f"loopback endpoint answering after {LATENCY_S} s; median of {args.repeats} (min-max)\n")
        print("| command | spawn → first probe s | spawn → first work request s | minus one probe round trip s |")
        print("|---|---:|---:|---:|")
        for name, command in commands.items():
            samples = []
            for repeat in range(args.repeats):
                out = Path(scratch) / f"{name}{repeat}.jsonl"
                samples.append(first_requests(command + (["--out", str(out)] if name == "gen" else []), server))
            probe, work = zip(*samples, strict=True)
            print(f"| {name} | {_spread(probe)} | {_spread(work)} | {statistics.median(work) - LATENCY_S:.2f} |")
        spawned = time.perf_counter()
        done = subprocess.run([*commands["gen"], "--out", str(Path(scratch) / "steady.jsonl")], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - spawned
        summary = done.stderr.strip().splitlines()[0]
        steady = float(re.search(r"([\d.]+) examples/s", summary).group(1))
        print(f"\ngen, 300 questions at cap 50, {LATENCY_S} s per request (ideal 100 examples/s):\n    {summary}")
        print(f"    → {steady:.1f} examples/s from the first request on (gen's own clock); "
              f"{300 / wall:.1f} examples/s over the process's whole life ({wall:.2f} s)")


def _spread(values) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
