"""Every strategy on the default prompt and the embedded model: requests, tokens and wall time, sequential vs
parallel, with the same seed in both modes.

    python -m benchmarks.strategies [--max-tokens N] [--seed S]      (from the repository root)

Runs the real `beamtui bench --strategy NAME --json` once per strategy at its default width, so the figures are
the ones a user gets. On a compute-bound CPU the parallel column shows what batched decoding buys, not a latency
overlap.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from engine.registry import strategy_names
from engine.settings import SearchSettings

ROOT = Path(__file__).resolve().parent.parent


def bench(strategy: str, max_tokens: int, seed: int) -> dict:
    width = SearchSettings(strategy=strategy).width
    command = [sys.executable, "-m", "tui.cli", "bench", "--strategy", strategy, "--widths", str(width),
               "--max-tokens", str(max_tokens), "--seed", str(seed), "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{strategy}: {done.stderr.strip()}")
    return json.loads(done.stdout)["rows"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=SearchSettings().max_tokens)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"embedded model, default prompt, max_tokens {args.max_tokens}, seed {args.seed}\n")
    print("| strategy | width | requests | tokens | seq s | par s | speedup | same answer |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for strategy in strategy_names():
        row = bench(strategy, args.max_tokens, args.seed)
        print(f"| {strategy} | {row['width']} | {row['requests']} | {row['tokens']} | {row['seq_s']:.2f} | "
              f"{row['par_s']:.2f} | x{row['speedup']:.2f} | {'yes' if row['same_answer'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
