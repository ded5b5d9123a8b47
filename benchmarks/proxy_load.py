"""What `beamtui proxy` adds between a client and a server that behaves like a GPU.

    python -m benchmarks.proxy_load [--clients 200] [--rounds 3] [--passes 2]    (from the repository root; ~2 minutes)

Three processes on loopback: the upstream (benchmarks/instant_server.py: 50 ms to first token plus 5 ms a token,
requests in flight not slowing each other, as a GPU's batched decoding, answers made once and kept so that the
upstream costs little CPU), `beamtui proxy` in front of it, and this script's clients (aiohttp, bodies read and
parsed with orjson, so that the clients take as little of the 2 cores as they can). Answers are 128 tokens, with
raw logprobs and top-20 alternatives where asked (vLLM's default).
- greedy: `--clients` clients each send `--rounds` requests through the proxy, then as many straight to the
  upstream's /v1/completions with the body the proxy sends; added latency is the proxy's p50 (p99) less the
  direct p50 (p99).
- smc:8: the same clients through the proxy, then the same searches through the engine library in this process
  (one request layer at the proxy's cap, the proxy's defaults): how a user without the proxy runs them; then
  once more with this process's collector set as the proxy sets its own (`settle_heap`: the start-up heap
  frozen, young objects collected every 10,000 allocations), what is left being the proxy's own work. The three
  smc:8 phases run `--passes` times in turn, each pass compared within itself: this machine's speed drifts by
  more over a minute than the proxy costs. Also each answer's end-to-end time less its search's own wall time
  (the `beamtui` object says it): what the proxy's parsing, admission, HTTP and answer cost around a search.
- CPU per request: the proxy's process (user + system time over the requests of a phase), and for the library
  phase this process's; their difference is what the proxy spends beyond the search. Requests a second
  held, errors and lost requests (no answer within 120 s).
- Memory: 1,000 requests queued behind `--max-concurrent 8`, the proxy's RSS before and at the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import psutil

from benchmarks.client_ceiling import free_port
from engine.backends.factory import open_sampler
from engine.request_layer import RequestLayer
from engine.sampler import Message
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tui.commands.proxy_http import settle_heap

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 128
CAP = 512  # --max-concurrent: 200 searches of 8 particles want 1,600 requests at once
HEADERS = {"Content-Type": "application/json"}
# Clients start spread over one greedy answer's upstream time (50 ms + 128 x 5 ms), as clients that do not share a
# clock arrive; started together they stay in step (every answer takes the same time) and each wave of 200 waits
# behind itself in any one process.
SPREAD_S = 0.69
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
SMC_PROXY = "smc:8, through the proxy"
SMC_LIBRARY = "smc:8, the engine library in this process"
SETTLED = "smc:8, the engine library, the proxy's collector settings"


def start(command: list[str], port: int, name: str | None = None) -> subprocess.Popen:
    """`command` in a process of its own, once it listens on `port`."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name = name or " ".join(command[2:5])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited: {process.stderr.read()[-800:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on {port}")


def proxy_command(upstream: int, port: int, cap: int, queue: int) -> list[str]:
    return [sys.executable, "-m", "tui.cli", "proxy", "--port", str(port), "--backend", "openai", "--base-url",
            f"http://127.0.0.1:{upstream}/v1", "--model", "synthetic", "--tokenizer", "embedded", "--max-tokens",
            str(TOKENS), "--max-concurrent", str(cap), "--max-queue", str(queue), "--max-retries", "0",
            "--timeout", "120"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(clients: int, rounds: int, call) -> dict:
    latencies, errors, lost = [], 0, 0
    started = time.perf_counter()

    async def client(index: int) -> None:
        nonlocal errors, lost
        await asyncio.sleep(SPREAD_S * index / clients)
        for round_ in range(rounds):
            sent = time.perf_counter()
            try:
                extra = await asyncio.wait_for(call(index * rounds + round_), 120)
                latencies.append((time.perf_counter() - sent, extra))
            except TimeoutError:
                lost += 1
            except (aiohttp.ClientError, Refused):
                errors += 1

    await asyncio.gather(*(client(index) for index in range(clients)))
    return {"latencies": latencies, "errors": errors, "lost": lost, "wall": time.perf_counter() - started}


class Refused(Exception):
    """An answer other than 200."""


async def post(session: aiohttp.ClientSession, url: str, body: dict) -> dict:
    async with session.post(url, data=orjson.dumps(body), headers=HEADERS) as answer:
        data = await answer.read()
        if answer.status != 200:
            raise Refused(f"{answer.status} {data[:200]!r}")
        return orjson.loads(data)


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


async def run(args) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    upstream = start([sys.executable, "-m", "benchmarks.instant_server", "--port", str(upstream_port), "--tokens",
                      "0", "--latency", "0.05", "--token-s", "0.005"], upstream_port)
    proxy = start(proxy_command(upstream_port, proxy_port, CAP, 4096), proxy_port)
    watched = psutil.Process(proxy.pid)
    through = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    straight = f"http://127.0.0.1:{upstream_port}/v1/completions"
    library = await Library.open(upstream_port)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(120))
    try:
        async def greedy_proxy(index: int):
            await post(session, through, {"model": "greedy", "messages": MESSAGES, "max_tokens": TOKENS,
                                          "seed": index})

        async def greedy_direct(index: int):  # the body the proxy sends for greedy
            await post(session, straight, {"model": "synthetic", "n": 1, "max_tokens": TOKENS, "temperature": 0.0,
                                           "top_p": 1.0, "seed": index, "prompt": library.prompt_ids,
                                           "return_tokens_as_token_ids": True, "logprobs": 1})

        async def smc_proxy(index: int):
            answer = await post(session, through, {"model": "smc:8", "messages": MESSAGES, "max_tokens": TOKENS,
                                                   "seed": index})
            return answer["beamtui"]["searches"][0]["timing"]["wall_s"]

        await phase(8, 1, greedy_proxy)  # warm: connections, the first search's imports
        await phase(8, 1, smc_proxy)
        await phase(8, 1, library.smc)
        rows = {}
        defaults = gc.get_threshold()
        phases = [("greedy, through the proxy", greedy_proxy), ("greedy, straight to the upstream", greedy_direct)]
        for number in range(1, args.passes + 1):
            phases += [(pass_name(SMC_PROXY, number), smc_proxy), (pass_name(SMC_LIBRARY, number), library.smc),
                       (pass_name(SETTLED, number), library.smc)]
        for name, call in phases:
            if name.startswith(SETTLED):
                settle_heap()
            else:
                gc.unfreeze()
                gc.set_threshold(*defaults)
            before, own = cpu(watched), cpu(psutil.Process())
            rows[name] = await phase(args.clients, args.rounds, call)
            rows[name]["proxy_cpu"] = cpu(watched) - before
            rows[name]["own_cpu"] = cpu(psutil.Process()) - own
        gc.unfreeze()
        gc.set_threshold(*defaults)
        memory = await queued(upstream_port, session)
    finally:
        await session.close()
        await library.sampler.aclose()
        proxy.terminate()
        upstream.terminate()
    report(rows, memory, args)


def pass_name(name: str, number: int) -> str:
    return f"{name}, pass {number}"


class Library:
    """The same smc:8 searches through the engine in this process, as a user of the library runs them: one
    request layer at the proxy's cap, the proxy's default settings."""

    def __init__(self, sampler, backend, layer):
        self.sampler, self.backend, self.layer = sampler, backend, layer
        self.conversation = (Message("user", MESSAGES[0]["content"]),)
        self.prompt_ids = list(sampler.render_chat(list(self.conversation)))
        self.settings = SearchSettings().with_spec("smc:8").replace(max_tokens=TOKENS)

    @classmethod
    async def open(cls, upstream_port: int) -> Library:
        backend = BackendSettings(backend="openai", base_url=f"http://127.0.0.1:{upstream_port}/v1", model="synthetic",
                                  tokenizer="embedded", max_concurrent=CAP, max_retries=0, timeout=120)
        sampler = await open_sampler(backend)
        return cls(sampler, backend, RequestLayer.for_backend(sampler, backend))

    async def smc(self, index: int) -> float:
        result = await run_search(self.settings.replace(seed=index), self.sampler, self.backend, layer=self.layer,
                                  prompt=self.conversation)
        if result.error:
            raise Refused(result.error)
        return result.wall_s


async def queued(upstream_port: int, session: aiohttp.ClientSession) -> tuple[float, float, int]:
    """The proxy's RSS with nothing in hand and with 1,000 requests queued behind --max-concurrent 8."""
    port = free_port()
    proxy = start(proxy_command(upstream_port, port, 8, 2000), port)
    watched = psutil.Process(proxy.pid)
    idle = watched.memory_info().rss
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    calls = [asyncio.ensure_future(post(session, url, {"model": "greedy", "messages": MESSAGES,
                                                       "max_tokens": TOKENS, "seed": i})) for i in range(1000)]
    peak, held = idle, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        peak = max(peak, watched.memory_info().rss)
        with urllib_request(f"http://127.0.0.1:{port}/health") as answer:
            held = max(held, json.loads(answer.read())["requests_in_hand"])
        if held >= 1000:
            break
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    proxy.terminate()
    return idle / 2**20, peak / 2**20, held


def urllib_request(url: str):
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def report(rows: dict, memory: tuple[float, float, int], args) -> None:
    print(f"{args.clients} clients x {args.rounds} requests a phase, {TOKENS}-token answers; upstream: 50 ms to "
          f"first token + 5 ms a token\n")
    print("| phase | requests | req/s | p50 s | p99 s | errors | lost | CPU per request ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        times = [t for t, _ in row["latencies"]]
        count = len(times)
        spent = row["proxy_cpu"] if "through the proxy" in name else row["own_cpu"] if "library" in name else None
        cpu_ms = None if spent is None else 1000 * spent / max(count, 1)
        print(f"| {name} | {count} | {count / row['wall']:.1f} | {percentile(times, 0.5):.3f} | "
              f"{percentile(times, 0.99):.3f} | {row['errors']} | {row['lost']} | "
              f"{'–' if cpu_ms is None else f'{cpu_ms:.2f}'} |")
    proxied = [t for t, _ in rows["greedy, through the proxy"]["latencies"]]
    straight = [t for t, _ in rows["greedy, straight to the upstream"]["latencies"]]
    print(f"\ngreedy, added by the proxy: p50 {1000 * (percentile(proxied, 0.5) - percentile(straight, 0.5)):.1f} "
          f"ms, p99 {1000 * (percentile(proxied, 0.99) - percentile(straight, 0.99)):.1f} ms")
    for number in range(1, args.passes + 1):
        through = rows[pass_name(SMC_PROXY, number)]
        smc = through["latencies"]
        added = [t - wall for t, wall in smc]
        share = [(t - wall) / wall for t, wall in smc]
        print(f"pass {number}: smc:8, end to end less the search's own wall time: p50 "
              f"{1000 * percentile(added, 0.5):.1f} ms ({100 * percentile(share, 0.5):.2f}% of the search), p99 "
              f"{1000 * percentile(added, 0.99):.1f} ms; "
              f"median search {statistics.median(w for _, w in smc):.3f} s")
        proxied = [t for t, _ in smc]
        for reference in (SMC_LIBRARY, SETTLED):
            library = rows[pass_name(reference, number)]
            straight = [t for t, _ in library["latencies"]]
            p50 = percentile(proxied, 0.5) - percentile(straight, 0.5)
            extra = (through["proxy_cpu"] - library["own_cpu"]) / max(len(smc), 1)
            print(f"pass {number}: smc:8, through the proxy less {reference.removeprefix('smc:8, ')}: p50 "
                  f"{1000 * p50:.1f} ms ({100 * p50 / percentile(straight, 0.5):.2f}%), p99 "
                  f"{1000 * (percentile(proxied, 0.99) - percentile(straight, 0.99)):.1f} ms; the proxy's CPU "
                  f"beyond the search's own {1000 * extra:.2f} ms a request")
    idle, peak, held = memory
    print(f"memory: {idle:.0f} MiB with nothing in hand, {peak:.0f} MiB at the peak with {held} requests in hand "
          f"behind --max-concurrent 8 ({(peak - idle) * 1024 / max(held, 1):.0f} KiB a queued request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
