"""`beamtui gen` against a loopback OpenAI-compatible endpoint: throughput, the seed's comparison, memory.

    python -m benchmarks.gen_throughput            (from the repository root; about 8 minutes)
    python -m benchmarks.gen_throughput --quick    (skips the 100,000-question memory run)

1. Throughput: 300 questions, 0.5 s per request, --max-concurrent 50 (the ideal is 100 examples/s).
2. Versus the seed: `--compare 256` at --max-concurrent 64, 0.5 s per request (sequential, then the window).
3. Memory: 100,000 questions, no added latency, --max-concurrent 64; the child's RSS is sampled every 0.5 s
   and reported at each tenth of the run, next to a 1,000-question run's peak.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent


def gen(server, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tui.cli", "gen", "--backend", "openai", "--base-url", server.base_url,
               "--model", "synthetic", "--tokenizer", "embedded", "--max-tokens", "16", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)


def write_questions(path: Path, count: int) -> Path:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(f"Question {i}: what is {i} times {i + 1}?\n")
    return path


def throughput(scratch: Path) -> None:
    questions = write_questions(scratch / "q300.txt", 300)
    with ThreadedFaultServer(FaultConfig(latency=0.5)) as server:
        done = gen(server, "--questions", str(questions), "--out", str(scratch / "t.jsonl"),
                   "--max-concurrent", "50", "--quiet")
        peak = server.stats.peak_in_flight
    summary = done.stderr.splitlines()[0]
    rate = float(re.search(r"([\d.]+) examples/s", summary).group(1))
    print("### Throughput: 300 questions, 0.5 s per request, --max-concurrent 50 (ideal 100 examples/s)\n")
    print(f"    {summary}")
    print(f"    → {rate:.1f} examples/s, {rate:.0f}% of ideal; peak in flight seen by the server: {peak}\n")


def versus_seed(scratch: Path) -> None:
    questions = write_questions(scratch / "q256.txt", 256)
    with ThreadedFaultServer(FaultConfig(latency=0.5)) as server:
        done = gen(server, "--questions", str(questions), "--compare", "256", "--max-concurrent", "64")
    print("### Versus the seed: --compare 256 at --max-concurrent 64, 0.5 s per request\n")
    print(f"    {done.stdout.strip()}\n")


def peak_rss(count: int, scratch: Path, checkpoints: int = 10) -> list[tuple[int, float]]:
    """(lines written, RSS MiB) at each tenth of a run over `count` questions; the last row is the peak."""
    questions = write_questions(scratch / f"q{count}.txt", count)
    out = scratch / f"m{count}.jsonl"
    with ThreadedFaultServer(FaultConfig()) as server:
        command = [sys.executable, "-m", "tui.cli", "gen", "--backend", "openai", "--base-url", server.base_url,
                   "--model", "synthetic", "--tokenizer", "embedded", "--max-tokens", "4", "--max-concurrent", "64",
                   "--questions", str(questions), "--out", str(out), "--quiet"]
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = psutil.Process(child.pid)
        samples, peak, next_mark = [], 0.0, 1
        while child.poll() is None:
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            written = _count_lines(out)
            if written >= next_mark * count // checkpoints:
                samples.append((written, rss))
                next_mark += 1
            time.sleep(0.5)
        samples.append((_count_lines(out), peak))
    return samples


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def memory(scratch: Path) -> None:
    small = peak_rss(1_000, scratch)
    large = peak_rss(100_000, scratch)
    print("### Memory: RSS of the gen process (--max-concurrent 64, no added latency)\n")
    print("| questions | lines written | RSS MiB |")
    print("|---:|---:|---:|")
    for written, rss in large[:-1]:
        print(f"| 100,000 | {written:,} | {rss:.0f} |")
    print(f"| 100,000 | {large[-1][0]:,} (done) | peak {large[-1][1]:.0f} |")
    print(f"| 1,000 | {small[-1][0]:,} (done) | peak {small[-1][1]:.0f} |\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        throughput(Path(scratch))
        versus_seed(Path(scratch))
        if "--quick" not in sys.argv:
            memory(Path(scratch))


if __name__ == "__main__":
    main()
