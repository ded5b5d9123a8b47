"""What `beamtui proxy` adds between a client and a server that behaves like a GPU.

    python -m benchmarks.proxy_load [--clients 200] [--rounds 3]       (from the repository root; ~5 minutes)

Three processes on loopback: the upstream (benchmarks/instant_server.py: 50 ms to first token plus 5 ms a token,
requests in flight not slowing each other, as a GPU's batched decoding, answers made once and kept so that the
upstream costs little CPU), `beamtui proxy` in front of it, and this script's clients (the openai SDK on its
aiohttp transport). Answers are 128 tokens, with raw logprobs and top-20 alternatives where asked (vLLM's default).
- greedy: `--clients` clients each send `--rounds` requests through the proxy, then as many straight to the
  upstream's /v1/completions with the same body the proxy would send; added latency is the proxy's p50 (p99) less
  the direct p50 (p99).
- smc:8: the same clients through the proxy; added latency is each answer's end-to-end time less its search's own
  wall time (the `beamtui` object says it): what the proxy's parsing, admission, HTTP and answer cost.
- The proxy's CPU per request (its process's user + system time over the requests of a phase), requests a second
  held, errors and lost requests (no answer within 120 s).
- Memory: 1,000 requests queued behind `--max-concurrent 8`, the proxy's RSS before and at the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil

from benchmarks.client_ceiling import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 128
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def start(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import socket

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[2:5]} exited: {process.stderr.read()[-800:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{command[2:5]} did not listen on {port}")


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
        for round_ in range(rounds):
            sent = time.perf_counter()
            try:
                extra = await asyncio.wait_for(call(index * rounds + round_), 120)
                latencies.append((time.perf_counter() - sent, extra))
            except TimeoutError:
                lost += 1
            except openai.APIError:
                errors += 1

    await asyncio.gather(*(client(index) for index in range(clients)))
    return {"latencies": latencies, "errors": errors, "lost": lost, "wall": time.perf_counter() - started}


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


async def run(args) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    upstream = start([sys.executable, "-m", "benchmarks.instant_server", "--port", str(upstream_port), "--tokens",
                      "0", "--latency", "0.05", "--token-s", "0.005"], upstream_port)
    proxy = start(proxy_command(upstream_port, proxy_port, 512, 4096), proxy_port)
    watched = psutil.Process(proxy.pid)
    transport = openai.DefaultAioHttpClient(limits=type(openai.DEFAULT_CONNECTION_LIMITS)(
        max_connections=args.clients * 2, max_keepalive_connections=args.clients * 2))
    through = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="x", max_retries=0,
                                 http_client=transport, timeout=120)
    direct = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{upstream_port}/v1", api_key="x", max_retries=0,
                                http_client=transport, timeout=120)
    from engine.backends.tokenizers import load_tokenizer
    from engine.sampler import Message

    prompt = load_tokenizer("embedded").render([Message("user", MESSAGES[0]["content"])])
    try:
        async def greedy_proxy(index: int):
            await through.chat.completions.create(model="greedy", messages=MESSAGES, max_tokens=TOKENS, seed=index)

        async def greedy_direct(index: int):
            await direct.completions.create(model="synthetic", prompt=prompt, max_tokens=TOKENS, temperature=0,
                                            seed=index, logprobs=1, extra_body={"return_tokens_as_token_ids": True,
                                                                               "top_p": 1.0})

        async def smc_proxy(index: int):
            answer = await through.chat.completions.create(model="smc:8", messages=MESSAGES, max_tokens=TOKENS,
                                                           seed=index)
            return answer.model_extra["beamtui"]["searches"][0]["timing"]["wall_s"]

        await phase(8, 1, greedy_proxy)  # warm: connections, the first search's imports
        rows = {}
        for name, call in (("greedy, through the proxy", greedy_proxy), ("greedy, straight to the upstream",
                                                                         greedy_direct),
                           ("smc:8, through the proxy", smc_proxy)):
            before = cpu(watched)
            rows[name] = await phase(args.clients, args.rounds, call)
            rows[name]["proxy_cpu"] = cpu(watched) - before
        memory = await queued(upstream_port, args)
    finally:
        await through.close()
        await direct.close()
        proxy.terminate()
        upstream.terminate()
    report(rows, memory, args)


async def queued(upstream_port: int, args) -> tuple[float, float, int]:
    """The proxy's RSS with nothing in hand and with 1,000 requests queued behind --max-concurrent 8."""
    port = free_port()
    proxy = start(proxy_command(upstream_port, port, 8, 2000), port)
    watched = psutil.Process(proxy.pid)
    idle = watched.memory_info().rss
    transport = openai.DefaultAioHttpClient(limits=type(openai.DEFAULT_CONNECTION_LIMITS)(
        max_connections=1100, max_keepalive_connections=1100))
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                                http_client=transport, timeout=600)
    calls = [asyncio.ensure_future(client.chat.completions.create(model="greedy", messages=MESSAGES,
                                                                  max_tokens=TOKENS, seed=i)) for i in range(1000)]
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
    await client.close()
    proxy.terminate()
    return idle / 2**20, peak / 2**20, held


def urllib_request(url: str):
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def report(rows: dict, memory: tuple[float, float, int], args) -> None:
    print(f"{args.clients} clients x {args.rounds} requests a phase, {TOKENS}-token answers; upstream: 50 ms to "
          f"first token + 5 ms a token\n")
    print("| phase | requests | req/s | p50 s | p99 s | errors | lost | proxy CPU per request ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        times = [t for t, _ in row["latencies"]]
        count = len(times)
        cpu_ms = 1000 * row["proxy_cpu"] / max(count, 1) if "proxy" in name else None
        print(f"| {name} | {count} | {count / row['wall']:.1f} | {percentile(times, 0.5):.3f} | "
              f"{percentile(times, 0.99):.3f} | {row['errors']} | {row['lost']} | "
              f"{'–' if cpu_ms is None else f'{cpu_ms:.2f}'} |")
    proxied = [t for t, _ in rows["greedy, through the proxy"]["latencies"]]
    straight = [t for t, _ in rows["greedy, straight to the upstream"]["latencies"]]
    print(f"\ngreedy, added by the proxy: p50 {1000 * (percentile(proxied, 0.5) - percentile(straight, 0.5)):.1f} "
          f"ms, p99 {1000 * (percentile(proxied, 0.99) - percentile(straight, 0.99)):.1f} ms")
    smc = rows["smc:8, through the proxy"]["latencies"]
    added = [t - wall for t, wall in smc]
    share = [(t - wall) / wall for t, wall in smc]
    print(f"smc:8, end to end less the search's own wall time: p50 {1000 * percentile(added, 0.5):.1f} ms "
          f"({100 * percentile(share, 0.5):.2f}% of the search), p99 {1000 * percentile(added, 0.99):.1f} ms; "
          f"median search {statistics.median(w for _, w in smc):.3f} s")
    idle, peak, held = memory
    print(f"memory: {idle:.0f} MiB with nothing in hand, {peak:.0f} MiB at the peak with {held} requests in hand "
          f"behind --max-concurrent 8 ({(peak - idle) * 1024 / max(held, 1):.0f} KiB a queued request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
