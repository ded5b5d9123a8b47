"""How many requests a second one beamtui process can send and take in, and what each costs it in CPU.

    python -m benchmarks.client_ceiling [--caps 64,256,1024] [--requests 4000]     (from the repository root)

The server is `benchmarks/instant_server.py` in a process of its own, answering at once with answers made
before it starts, so the client is what is measured. For each cap:
- gen: `--requests` one-line questions, `--max-tokens 4`;
- search: an eval of best-of-n:8 searches (8 requests each), `--requests` / 8 problems.
Requests/s is over the work itself (gen's own clock; eval's timing line for the strategy), client CPU per request
is the process's user + system CPU less that of the same command with one question, over the requests, and
"peak in flight" is gen's own count of requests in flight at once (its summary line): whether the window filled.

    python -m benchmarks.client_ceiling --client-alone    (beamtui's JSON client by itself: 4,000 posts at cap 100
                                                           to the instant server, CPU per request, medians of 3)
    python -m benchmarks.client_ceiling --cap50    (the issue's other figures: CPU per request at cap 50 against a
                                                    0.5 s server, and K = 100 requests of 0.3 s in flight, against
                                                    the aiohttp.web server and the bare asyncio one; ~2 minutes)

Each of --cap50's rates is printed beside the reference, the same requests at the same cap from a bare
aiohttp client, measured in the same sitting against the same server: aiohttp alone, its connections opened
before the clock starts, each of `cap` workers sending its next request the moment its last answer is read,
and doing nothing else. Against an ideal that only a client of no cost on a machine with no wake-up latency
could reach, the reference says what this machine and server allow. Last, what waking costs here: one request's
round trip to the instant server back to back and after 0.3 s idle, and how late asyncio.sleep(0.3) returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = ("--backend", "openai", "--model", "synthetic", "--tokenizer", "embedded")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class InstantServer:
    """benchmarks.instant_server in its own process."""

    def __init__(self, latency: float = 0.0, tokens: int = 4, token_s: float = 0.0, bare: bool = False):
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.instant_server", "--port", str(self.port),
                                         "--latency", str(latency), "--tokens", str(tokens), "--token-s",
                                         str(token_s), *(["--asyncio"] if bare else [])], cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the instant server did not start") from None
                time.sleep(0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> InstantServer:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def timed(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """The command's result, its wall seconds and its user + system CPU seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, os.waitstatus_to_exitcode(status), out.read(), err.read())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:5])} failed: {done.stderr[-500:]}")
    return done, wall, usage.ru_utime + usage.ru_stime


def questions_file(folder: Path, count: int) -> Path:
    path = folder / f"q{count}.txt"
    path.write_text("".join(f"Question number {i}?\n" for i in range(count)))
    return path


def problems_file(folder: Path, count: int) -> Path:
    path = folder / f"p{count}.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "question": f"{i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(count)))
    return path


def gen_command(server: InstantServer, questions: Path, out: Path, cap: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", "gen", *ENDPOINT, "--base-url", server.base_url, "--questions",
            str(questions), "--out", str(out), "--max-tokens", "4", "--max-concurrent", str(cap), "--quiet", *extra]


def gen_rate(stderr: str) -> tuple[int, float]:
    """Examples written and gen's own examples a second (its seconds are printed to 0.1 s, too coarse a clock:
    300 questions in 3.1 s read as 96.8 a second whether they took 3.05 s or 3.149 s)."""
    found = re.search(r"(\d+) examples in [\d.]+s · ([\d.]+) examples/s", stderr)
    return int(found.group(1)), float(found.group(2))


def gen_peak(stderr: str) -> str:
    found = re.search(r"at most (\d+) in flight", stderr)
    return found.group(1) if found else "–"  # versions before the count


BODY = {"model": "synthetic", "prompt": [1, 2, 3], "max_tokens": 4, "n": 1, "logprobs": 1}  # gen's, near enough
ENCODED = json.dumps(BODY).encode()  # the bare client encodes nothing per request


async def bare_post(session, server: InstantServer) -> None:
    """One request of the bare aiohttp client, its answer read and parsed."""
    async with session.post(server.base_url + "/completions", data=ENCODED,
                            headers={"Content-Type": "application/json"}) as answer:
        json.loads(await answer.read())


def reference_rate(server: InstantServer, requests: int, cap: int) -> float:
    """Requests a second of a bare aiohttp client: `cap` workers, `requests` in all, gen's request body."""
    import aiohttp

    async def measure() -> float:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=cap)) as session:
            async def worker(count: int) -> None:
                for _ in range(count):
                    await bare_post(session, server)

            await asyncio.gather(*(worker(1) for _ in range(cap)))  # the connections, opened off the clock
            shares = [requests // cap + (i < requests % cap) for i in range(cap)]
            started = time.perf_counter()
            await asyncio.gather(*(worker(share) for share in shares))
            return requests / (time.perf_counter() - started)

    return asyncio.run(measure())


def wake_up_cost(server: InstantServer) -> tuple[float, float, float]:
    """Median milliseconds: a request's round trip back to back, the same after 0.3 s idle, asyncio.sleep(0.3)'s
    lateness."""
    import aiohttp

    async def measure() -> tuple[float, float, float]:
        async with aiohttp.ClientSession() as session:
            async def round_trip(idle: float) -> float:
                await asyncio.sleep(idle)
                started = time.perf_counter()
                await bare_post(session, server)
                return time.perf_counter() - started

            await round_trip(0)
            busy = [await round_trip(0) for _ in range(50)]
            idle = [await round_trip(0.3) for _ in range(15)]
            late = []
            for _ in range(15):
                started = time.perf_counter()
                await asyncio.sleep(0.3)
                late.append(time.perf_counter() - started - 0.3)
            return tuple(1000 * sorted(values)[len(values) // 2] for values in (busy, idle, late))

    return asyncio.run(measure())


def client_alone(requests: int = 4000, cap: int = 100) -> None:
    """CPU per request of `JSONClient.post` alone (gen's body, 16-token answers), in this process."""
    from engine.backends.openai_client import JSONClient


    async def measure(server: InstantServer) -> float:
        client = JSONClient(server.base_url, None, cap, 30.0)
        room = asyncio.Semaphore(cap)

        async def one() -> None:
            async with room:
                await client.post("/completions", BODY)

        try:
            await asyncio.gather(*(one() for _ in range(cap)))  # connections opened off the clock
            started = time.process_time()
            await asyncio.gather(*(one() for _ in range(requests)))
            return (time.process_time() - started) / requests
        finally:
            await client.aclose()

    with InstantServer(tokens=16) as server:
        costs = sorted(asyncio.run(measure(server)) for _ in range(3))
    print(f"JSONClient.post alone, cap {cap}, {requests} requests: {1000 * costs[1]:.3f} ms of CPU a request "
          f"(median of 3; {1000 * costs[0]:.3f}-{1000 * costs[2]:.3f})")


def ceiling(caps: list[int], requests: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, InstantServer() as server:
        folder = Path(scratch)
        questions, one = questions_file(folder, requests), questions_file(folder, 1)
        problems, one_problem = problems_file(folder, requests // 8), problems_file(folder, 1)
        _, _, gen_base_cpu = timed(gen_command(server, one, folder / "one.jsonl", 8))
        eval_flags = ("--strategies", "best-of-n:8", "--max-tokens", "4", "--quiet", "--json", *ENDPOINT,
                      "--base-url", server.base_url)
        _, _, eval_base_cpu = timed([sys.executable, "-m", "tui.cli", "eval", "--problems", str(one_problem),
                                     "--out", str(folder / "one-eval.jsonl"), *eval_flags])
        print(f"instant loopback server (aiohttp.web, its own process); {requests} requests a run\n")
        print("| work | cap | requests | requests/s | client CPU per request ms | peak in flight |")
        print("|---|---:|---:|---:|---:|---:|")
        for cap in caps:
            done, _, cpu = timed(gen_command(server, questions, folder / f"gen-{cap}.jsonl", cap))
            count, rate = gen_rate(done.stderr)
            peak = gen_peak(done.stderr)
            print(f"| gen | {cap} | {count} | {rate:.1f} | {1000 * (cpu - gen_base_cpu) / count:.3f} | "
                  f"{peak} |", flush=True)
            out = folder / f"eval-{cap}.jsonl"
            done, _, cpu = timed([sys.executable, "-m", "tui.cli", "eval", "--problems", str(problems), "--out",
                                  str(out), "--max-concurrent", str(cap), *eval_flags])
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            sent = sum(line["requests"] for line in lines if "id" in line)
            phase = sum(line["wall_s"] for line in lines if line.get("timing"))
            print(f"| search (best-of-n:8) | {cap} | {sent} | {sent / phase:.1f} | "
                  f"{1000 * (cpu - eval_base_cpu) / sent:.3f} | – |", flush=True)


def cap50() -> None:
    """gen's rates at cap 50 against a 0.5 s server (300 and 3,000 questions) and with K = 100 requests of 0.3 s
    kept in flight (2,000 questions, ideal 333 a second), each beside the bare aiohttp client's, against the
    aiohttp.web server and against the bare asyncio one; client CPU per request at cap 50 (3,000 questions less
    300, aiohttp.web server)."""
    print("| server | figure | gen | bare aiohttp client | gen / bare | ideal |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for bare, label in ((False, "aiohttp.web"), (True, "asyncio")):
            with InstantServer(latency=0.5, tokens=16, bare=bare) as server:
                runs = {}
                for count in (300, 3000):
                    done, wall, cpu = timed(gen_command(server, questions_file(folder, count),
                                                        folder / f"c{count}{label}.jsonl", 50))
                    runs[count] = (gen_rate(done.stderr), cpu)
                reference = reference_rate(server, 300, 50)
            (n3, rate3), cpu3 = runs[300]
            (n30, rate30), cpu30 = runs[3000]
            print(f"| {label} | cap 50, 0.5 s, 300 questions, examples/s | {rate3:.1f} | {reference:.1f} | "
                  f"{rate3 / reference:.3f} | 100 |")
            print(f"| {label} | cap 50, 0.5 s, 3,000 questions, examples/s | {rate30:.1f} | | | 100 |")
            if not bare:
                cpu_per_request = 1000 * (cpu30 - cpu3) / (n30 - n3)
            with InstantServer(latency=0.3, tokens=16, bare=bare) as server:
                done, _, _ = timed(gen_command(server, questions_file(folder, 2000), folder / f"k{label}.jsonl", 100))
                _, rate = gen_rate(done.stderr)
                reference = reference_rate(server, 2000, 100)
            ideal = 100 / 0.3
            print(f"| {label} | K = 100 in flight, 0.3 s, efficiency | {rate / ideal:.3f} | {reference / ideal:.3f} | "
                  f"{rate / reference:.3f} | 1 |", flush=True)
        print(f"\nclient CPU per request at cap 50 (aiohttp.web server): {cpu_per_request:.3f} ms")
        with InstantServer(tokens=16) as server:
            busy, idle, late = wake_up_cost(server)
            print(f"waking: a request's round trip {busy:.2f} ms back to back, {idle:.2f} ms after 0.3 s idle; "
                  f"asyncio.sleep(0.3) {late:.2f} ms late (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", default="64,256,1024")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--cap50", action="store_true")
    parser.add_argument("--client-alone", action="store_true")
    args = parser.parse_args()
    if args.client_alone:
        client_alone()
    elif args.cap50:
        cap50()
    else:
        ceiling([int(cap) for cap in args.caps.split(",")], args.requests)


if __name__ == "__main__":
    main()
