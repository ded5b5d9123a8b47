"""`beamtui gen` over two endpoints against one: does a second replica double the throughput?

    python -m benchmarks.endpoints_gen      (from the repository root; about 40 seconds)

Each endpoint is a loopback fault server that works on 50 requests at once, 0.5 s each (100 requests/s; more
queue at the server). gen runs 1,500 questions at --max-concurrent 100: first against one endpoint, then against
two with --endpoint-max-concurrent 50. The goal is >= 1.8x.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tests.fault_server import FaultConfig, ThreadedFaultServer

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = 1500
CAP = 100
SERVER = FaultConfig(latency=0.5, capacity=50)


def gen(scratch: Path, name: str, base_urls: list[str], *extra: str) -> float:
    """examples/s of one gen run, as gen itself reports it (the run, without process start-up)."""
    questions = scratch / "q.txt"
    if not questions.exists():
        questions.write_text("".join(f"What is {i} plus {i}?\n" for i in range(QUESTIONS)))
    command = [sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out",
               str(scratch / f"{name}.jsonl"), "--backend", "openai", "--model", "synthetic", "--tokenizer",
               "embedded", "--max-tokens", "4", "--max-concurrent", str(CAP), "--quiet", *extra]
    for url in base_urls:
        command += ["--base-url", url]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr.strip())
    return float(done.stderr.split(" examples/s")[0].rsplit("· ", 1)[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        scratch = Path(scratch)
        servers = [stack.enter_context(ThreadedFaultServer(SERVER)) for _ in range(2)]
        started = time.perf_counter()
        one = gen(scratch, "one", [servers[0].base_url])
        two = gen(scratch, "two", [s.base_url for s in servers], "--endpoint-max-concurrent", "50")
        print(f"gen, {QUESTIONS} questions, cap {CAP}; each endpoint 50 at once x 0.5 s (ideal 100/s each)\n")
        print("| endpoints | examples/s |")
        print("|---:|---:|")
        print(f"| 1 | {one:.1f} |")
        print(f"| 2 | {two:.1f} |")
        print(f"\ntwo against one: x{two / one:.2f} (goal >= 1.8) · {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
