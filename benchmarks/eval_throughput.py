"""`beamtui eval` against a loopback endpoint: throughput against the cap's ideal, sequential vs parallel, memory.

    python -m benchmarks.eval_throughput      (from the repository root; about 3 minutes)

1. Throughput: 500 problems, strategies greedy and best-of-n:4 (2,500 requests), 0.3 s per request,
   --max-concurrent 64. The ideal is the cap over the latency: 213 requests/s.
2. Sequential vs parallel: the same eval on 30 problems with --mode sequential, then parallel.
3. Memory: peak RSS of the eval process over 1,000 and 10,000 problems (greedy, no added latency, cap 64).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent
LATENCY_S = 0.3
CAP = 64


def write_problems(path: Path, count: int) -> Path:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"p{i}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)})
                         + "\n")
    return path


def evaluate(server, problems: Path, out: Path, *extra: str) -> tuple[dict, float]:
    command = [sys.executable, "-m", "tui.cli", "eval", "--problems", str(problems), "--out", str(out),
               "--backend", "openai", "--base-url", server.base_url, "--model", "synthetic", "--tokenizer",
               "embedded", "--max-tokens", "8", "--temperature", "1", "--json", "--quiet", *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process, peak = psutil.Process(child.pid), 0.0
    while child.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out_text, err = child.communicate()
    if child.returncode:
        sys.exit(err.strip())
    summary = json.loads(out_text)
    summary["process_s"] = time.perf_counter() - started
    return summary, peak


def requests(summary: dict) -> int:
    return round(sum(row["mean_requests"] * row["n"] for row in summary["strategies"]))


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        with ThreadedFaultServer(FaultConfig(latency=LATENCY_S)) as server:
            summary, _ = evaluate(server, write_problems(scratch / "p500.jsonl", 500), scratch / "t.jsonl",
                                  "--strategies", "greedy,best-of-n:4", "--max-concurrent", str(CAP))
            peak_in_flight = server.stats.peak_in_flight
            count, ideal = requests(summary), CAP / LATENCY_S
            rate = count / summary["wall_s"]
            print(f"### Throughput: 500 problems x (greedy, best-of-n:4), {LATENCY_S} s per request, cap {CAP}\n")
            print(f"- {count} requests in {summary['wall_s']:.2f} s: {rate:.0f} requests/s against an ideal of "
                  f"{ideal:.0f} ({rate / ideal:.2f}); peak in flight at the server {peak_in_flight}")
            print(f"- whole process, start-up included: {summary['process_s']:.2f} s\n")
            small = write_problems(scratch / "p30.jsonl", 30)
            seq, _ = evaluate(server, small, scratch / "s.jsonl", "--strategies", "greedy,best-of-n:4", "--mode",
                              "sequential", "--max-concurrent", str(CAP))
            par, _ = evaluate(server, small, scratch / "q.jsonl", "--strategies", "greedy,best-of-n:4",
                              "--max-concurrent", str(CAP))
            print("### Sequential vs parallel: 30 problems x (greedy, best-of-n:4)\n")
            print(f"- sequential {seq['wall_s']:.2f} s, parallel {par['wall_s']:.2f} s: "
                  f"x{seq['wall_s'] / par['wall_s']:.1f}\n")
        with ThreadedFaultServer(FaultConfig()) as server:
            print("### Memory: peak RSS of the eval process (greedy, no added latency, cap 64)\n")
            print("| problems | wall s | peak RSS MiB |")
            print("|---:|---:|---:|")
            for count in (1_000, 10_000):
                summary, peak = evaluate(server, write_problems(scratch / f"m{count}.jsonl", count),
                                         scratch / f"m{count}.out.jsonl", "--strategies", "greedy",
                                         "--max-concurrent", str(CAP))
                print(f"| {count:,} | {summary['wall_s']:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
