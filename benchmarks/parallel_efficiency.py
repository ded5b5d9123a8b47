"""Parallel efficiency against a loopback OpenAI-compatible endpoint with 0.3 s of latency per request.

    python -m benchmarks.parallel_efficiency      (from the repository root)

Starts tests/fault_server.py (synthetic tokens, no faults, 0.3 s per answer) on 127.0.0.1 and runs the real
`beamtui bench` against it: once as issued (`--widths 8 --n-per-beam 4`), and once against a server that
ignores `n` with `--max-concurrent 8`, so that 32 requests per block compete for 8 slots. The server counts the
peak number of requests in flight.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent
LATENCY_S = 0.3


def bench(server, *extra: str) -> dict:
    command = [
        sys.executable, "-m", "tui.cli", "bench", "--backend", "openai", "--base-url", server.base_url,
        "--model", "synthetic", "--tokenizer", "embedded", "--widths", "8", "--n-per-beam", "4",
        "--seed", "1", "--json", *extra,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["rows"][0]


def main() -> None:
    print(f"loopback endpoint, {LATENCY_S} s per request; beam_width 8, n_per_beam 4, block 32 of 128 tokens\n")
    print("| server | max_concurrent | requests | seq_s | par_s | speedup | ideal | efficiency | peak in flight |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases = (("honours n", FaultConfig(latency=LATENCY_S), "32"),
             ("honours n", FaultConfig(latency=LATENCY_S), "8"),
             ("ignores n", FaultConfig(latency=LATENCY_S, rate_ignore_n=1.0), "8"))
    for label, config, cap in cases:
        with ThreadedFaultServer(config) as server:
            row = bench(server, "--max-concurrent", cap)
            peak = server.stats.peak_in_flight
        print(f"| {label} | {cap} | {row['requests']} | {row['seq_s']:.2f} | {row['par_s']:.2f} | "
              f"{row['speedup']:.2f}x | {row['ideal']:.2f}x | {row['efficiency']:.3f} | {peak} |")


if __name__ == "__main__":
    main()
