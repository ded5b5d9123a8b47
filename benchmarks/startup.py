"""Time to first request: `beamtui run` and `beamtui gen` on the openai backend with a local tokenizer.

    python -m benchmarks.startup [--repeats 5]      (from the repository root)

A loopback endpoint (tests/fault_server.py) answers after 0.5 s and notes when each request arrives. For each
command, from the moment the process is spawned: when the first start-up probe arrives (imports, settings, the
tokenizer), and when the first request of the work itself arrives (the probes run together, so this should be
the first figure plus one probe round trip). Then gen's throughput at cap 50, on 300 questions and on 3,000,
and the last 300-question run as the server saw it, wave by wave: how long after the wave before each left, and
over how long its requests went out. Last, one question against a server that answers at once
(benchmarks/instant_server.py, its own process), from spawning `beamtui gen` to its exit.
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
CAP = 50
STEADY_QUESTIONS = (300, 3000)  # six waves of 50, where the first wave's ramp weighs; then sixty
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
    config = FaultConfig(latency=LATENCY_S, arrivals_kept=max(STEADY_QUESTIONS) + 8)  # + probes
    with tempfile.TemporaryDirectory() as scratch, ThreadedFaultServer(config) as server:
        questions = {count: _questions(Path(scratch), count) for count in STEADY_QUESTIONS}
        base = [sys.executable, "-m", "tui.cli"]

        def command(name: str, repeat: int, count: int = 300) -> list[str]:
            if name == "run":
                return [*base, "run", *ENDPOINT, "--base-url", server.base_url, "--prompt", "hi",
                        "--max-tokens", "4", "--block-tokens", "4", "--json"]
            return [*base, "gen", *ENDPOINT, "--base-url", server.base_url, "--questions", str(questions[count]),
                    "--max-tokens", "16", "--max-concurrent", str(CAP), "--quiet",
                    "--out", str(Path(scratch) / f"{count}-{repeat}.jsonl")]

        print(f"loopback endpoint answering after {LATENCY_S} s; median of {args.repeats} (min-max)\n")
        print("| command | spawn → first probe s | spawn → first work request s | minus one probe round trip s |")
        print("|---|---:|---:|---:|")
        for name in ("run", "gen"):
            samples = [first_requests(command(name, repeat), server) for repeat in range(args.repeats)]
            probe, work = zip(*samples, strict=True)
            print(f"| {name} | {_spread(probe)} | {_spread(work)} | {statistics.median(work) - LATENCY_S:.2f} |")
        print(f"\ngen at cap {CAP}, {LATENCY_S} s per request (ideal {CAP / LATENCY_S:.0f} examples/s); "
              f"median of {args.repeats} (min-max)\n")
        print("| questions | examples/s from the first request on (gen's clock) | over the process's whole life |")
        print("|---:|---:|---:|")
        for count in STEADY_QUESTIONS:
            steady, whole = [], []
            for repeat in range(args.repeats):
                server.stats.arrivals.clear()
                spawned = time.perf_counter()
                done = subprocess.run(command("gen", repeat + args.repeats, count), cwd=ROOT, capture_output=True,
                                      text=True, check=True)
                whole.append(count / (time.perf_counter() - spawned))
                steady.append(float(re.search(r"([\d.]+) examples/s", done.stderr).group(1)))
            print(f"| {count:,} | {_spread(steady, 1)} | {_spread(whole, 1)} |")
            if count == min(STEADY_QUESTIONS):
                waves = _waves(server.stats.arrivals)
        print(f"\nthe last {min(STEADY_QUESTIONS)}-question run, as the server saw it: waves of {CAP} requests\n")
        print("| wave | first request at s | after the wave before, past the latency, ms | first to last request ms |")
        print("|---:|---:|---:|---:|")
        for number, (first, gap, spread) in enumerate(waves):
            print(f"| {number} | {first:.3f} | {'' if gap is None else f'{gap * 1000:.1f}'} | {spread * 1000:.0f} |")
        one_question(Path(scratch), args.repeats)


def one_question(scratch: Path, repeats: int) -> None:
    """`beamtui gen` of one question against an instant server: spawn to exit, start-up and the end included."""
    from benchmarks.client_ceiling import InstantServer

    question = _questions(scratch, 1)
    with InstantServer() as instant:
        walls = []
        for repeat in range(repeats):
            spawned = time.perf_counter()
            subprocess.run([sys.executable, "-m", "tui.cli", "gen", *ENDPOINT, "--base-url", instant.base_url,
                            "--questions", str(question), "--max-tokens", "16", "--quiet",
                            "--out", str(scratch / f"one-{repeat}.jsonl")], cwd=ROOT, capture_output=True, check=True)
            walls.append(time.perf_counter() - spawned)
    print(f"\none question against an instant server, spawn to exit: {_spread(walls)} s")


def _waves(arrivals: list[float], size: int = CAP) -> list[tuple[float, float | None, float]]:
    """(first request, its delay past the wave before's first plus the latency, first to last) per wave of
    `size` work requests, in seconds from the first work request; the start-up probes come first."""
    first_probe = arrivals[0]
    work = sorted(t for t in arrivals if t >= first_probe + LATENCY_S * 0.9)
    waves = [work[i:i + size] for i in range(0, len(work), size)]
    return [(wave[0] - work[0], None if i == 0 else wave[0] - waves[i - 1][0] - LATENCY_S, wave[-1] - wave[0])
            for i, wave in enumerate(waves)]


def _questions(scratch: Path, count: int) -> Path:
    path = scratch / f"questions{count}.txt"
    path.write_text("".join(f"Question {i}: what is {i} plus {i}?\n" for i in range(count)))
    return path


def _spread(values, digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


if __name__ == "__main__":
    main()
