"""Dashboard responsiveness with 100 requests in flight, measured end to end in a real terminal (tmux).

    python -m benchmarks.tui_responsiveness [STRATEGY ...]     (from the repository root; needs tmux)

A loopback endpoint (tests/fault_server.py, in its own process) answers every request after 1 s with one choice,
as servers that ignore `n` do, so every candidate is a request of its own. `beamtui` runs in a 160x48 tmux pane,
once per strategy, sized to keep 100 requests in flight under a cap of 100 (beam 100x1, 100 chains, 100
particles, best of 100; greedy and sample send one request at a time). Then:
- key latency: time from `tmux send-keys` to the app writing the frame that shows the result, read from the
  pane's output stream (`tmux pipe-pane`), for `p` (the prompt dialog opens) and `m` (the settings bar
  shows the other mode; Textual rewrites only the cells that change, so a new word is what we look for)
  while 100 requests are in flight. Reading the stream instead of polling
  `capture-pane` keeps the harness from stealing the CPU it measures;
- UI-thread CPU: utime+stime of the process's main thread (/proc/PID/task/PID/stat) over 10 s of searching.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

from tests.conftest import free_port

SIZE = (160, 48)
SESSION = "beamtui-bench"
POLL_S = 0.05


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def pane() -> str:
    return tmux("capture-pane", "-t", SESSION, "-p")


def wait_for(pattern: str, timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while not re.search(pattern, pane()):
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{pattern!r} did not appear:\n{pane()}")
        time.sleep(POLL_S)
    return time.perf_counter() - started


class PaneStream:
    """What the app writes to its terminal, as tmux copies it to a file."""

    def __init__(self, path: str):
        self.path = path
        open(path, "wb").close()
        tmux("pipe-pane", "-t", SESSION, "-o", f"cat >> {path}")
        self.file = open(path, "rb")
        self.file.seek(0, os.SEEK_END)

    def key_latency(self, key: str, needle: bytes, timeout: float = 10.0) -> float:
        """Seconds from sending `key` until the app writes `needle`."""
        self.file.seek(0, os.SEEK_END)
        seen = b""
        started = time.perf_counter()
        tmux("send-keys", "-t", SESSION, key)
        while needle not in seen:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{needle!r} was not written after {key!r}")
            chunk = self.file.read()
            seen = seen[-len(needle):] + chunk if chunk else seen
            if not chunk:
                time.sleep(0.001)
        return time.perf_counter() - started


def start_session() -> None:
    """A fresh tmux session; a tmux server that is still shutting down can refuse the first attempt."""
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    for _ in range(5):
        if subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", str(SIZE[0]), "-y", str(SIZE[1])],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("tmux would not start a session")


def thread_cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/task/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WIDTH_FLAGS = {  # 100 requests in flight at once, whatever the strategy
    "beam": "--beam-width 100 --n-per-beam 1",
    "mcmc": "--chains 100 --mcmc-steps 2",
    "smc": "--particles 100",
    "best-of-n": "--best-of 100",
}


def measure(strategy: str, port: int) -> tuple[list[float], list[float], float, int]:
    command = (
        f"{sys.executable} -m tui.cli --backend openai --base-url http://127.0.0.1:{port}/v1 --model synthetic "
        f"--tokenizer embedded --strategy {strategy} {WIDTH_FLAGS[strategy]} --max-concurrent 100 "
        "--block-tokens 8 --max-tokens 4096 --temperature 1 --seed 1"  # T 1: the synthetic server gives exact log q
    )
    start_session()
    try:
        time.sleep(1)
        tmux("send-keys", "-t", SESSION, f"cd {os.getcwd()} && {command}", "Enter")
        wait_for(r"in flight 100 of 100")
        pid = int(subprocess.run(["pgrep", "-f", "tui.cli --backend openai"], capture_output=True, text=True)
                  .stdout.split()[0])
        stream = PaneStream(f"/tmp/{SESSION}-{port}.out")
        prompt_ms, mode_ms = [], []
        for _ in range(5):
            for mode in ("sequential", "parallel"):
                wait_for(r"in flight 100 of 100" if mode == "sequential" else r"in flight 1 of 100")
                prompt_ms.append(1000 * stream.key_latency("p", b"Enter starts a new search"))
                tmux("send-keys", "-t", SESSION, "Escape")
                wait_for(r"^(?![\s\S]*Enter starts a new search)")
                mode_ms.append(1000 * stream.key_latency("m", f"{mode} · {strategy}".encode()))
        wait_for(r"in flight 100 of 100")
        blocks_before = int(re.search(r"block (\d+) of", pane()).group(1))
        cpu_before, wall_before = thread_cpu_seconds(pid), time.perf_counter()
        time.sleep(10)
        cpu = (thread_cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
        blocks = int(re.search(r"block (\d+) of", pane()).group(1)) - blocks_before
    finally:
        tmux("kill-session", "-t", SESSION)
    return prompt_ms, mode_ms, cpu, blocks


def main() -> None:
    strategies = sys.argv[1:] or list(WIDTH_FLAGS)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.fault_server", "--port", str(port), "--latency", "1.0",
                               "--rate-ignore-n", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"tmux {SIZE[0]}x{SIZE[1]}, loopback endpoint 1 s per request (one choice each), 100 requests in flight, "
          "cap 100; "
          "ten presses of each key per strategy\n")
    print("| strategy | `p` → prompt dialog, median / max | `m` → new mode shown, median / max | UI-thread CPU "
          "(10 s) | blocks begun in the CPU window |")
    print("|---|---:|---:|---:|---:|")
    try:
        for strategy in strategies:
            prompt_ms, mode_ms, cpu, blocks = measure(strategy, port)
            print(f"| {strategy} | {statistics.median(prompt_ms):.0f} / {max(prompt_ms):.0f} ms | "
                  f"{statistics.median(mode_ms):.0f} / {max(mode_ms):.0f} ms | {100 * cpu:.0f}% | {blocks} |",
                  flush=True)
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
