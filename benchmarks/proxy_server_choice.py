"""Which HTTP server the proxy's face stands on: aiohttp.web against uvicorn with Starlette, on the proxy's load.

    pip install uvicorn starlette httptools uvloop      # the candidates beamtui does not depend on
    python -m benchmarks.proxy_server_choice [--clients 200] [--requests 6000]     (from the repository root)

Each server runs in a process of its own with one route shaped as the proxy's: POST a chat request (JSON read and
parsed), answer a ChatCompletion-sized JSON object. `--clients` aiohttp clients on keep-alive connections send
`--requests` in all. Reported: requests a second held and the server process's CPU per request (user + system).
uvicorn runs at its fastest (httptools and uvloop when installed; named in the table), aiohttp.web on asyncio's
own loop, as the proxy runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import psutil

from benchmarks.client_ceiling import free_port
from benchmarks.proxy_load import start

ANSWER = json.dumps({"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "smc:8",
                     "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                  "message": {"role": "assistant", "content": "word " * 200}}],
                     "usage": {"prompt_tokens": 20, "completion_tokens": 1024, "total_tokens": 1044},
                     "beamtui": {"spec": "smc:8", "stats": {"resamples": 3}}}).encode()
REQUEST = json.dumps({"model": "smc:8", "messages": [{"role": "user", "content": "Why is the sky blue?"}],
                      "max_tokens": 128, "seed": 1}).encode()

SERVERS = {
    "aiohttp.web": """
import json, sys
from aiohttp import web
async def chat(request):
    json.loads(await request.read())
    return web.Response(body=ANSWER, content_type="application/json")
app = web.Application()
app.add_routes([web.post("/v1/chat/completions", chat)])
web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None, backlog=2048)
""",
    "uvicorn + starlette": """
import json
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
async def chat(request):
    json.loads(await request.body())
    return Response(ANSWER, media_type="application/json")
app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False, backlog=2048,
            http="auto", loop="auto")
""",
}


def uvicorn_flavour() -> str:
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return f"{http}, {loop}"


def serve(name: str, port: int) -> subprocess.Popen:
    code = f"ANSWER = {ANSWER!r}\nPORT = {port}\n" + SERVERS[name]
    return start([sys.executable, "-c", code], port, name)


async def load(port: int, clients: int, requests: int) -> float:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    left = requests
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=REQUEST, headers={"Content-Type": "application/json"}) as answer:
                    await answer.read()
                    assert answer.status == 200, answer.status

        await asyncio.gather(*(client() for _ in range(min(clients, 50))))  # warm
        left = requests
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.clients} clients, {args.requests} requests a run, best of {args.repeats} runs; a ChatCompletion-"
          f"sized answer ({len(ANSWER):,} bytes)\n")
    print("| server | req/s | server CPU per request ms |")
    print("|---|---:|---:|")
    for name in SERVERS:
        port = free_port()
        process = serve(name, port)
        watched = psutil.Process(process.pid)
        best = None
        try:
            for _ in range(args.repeats):
                before = cpu(watched)
                wall = asyncio.run(load(port, args.clients, args.requests))
                row = (args.requests / wall, 1000 * (cpu(watched) - before) / (args.requests + min(args.clients, 50)))
                best = row if best is None or row[0] > best[0] else best
        finally:
            process.terminate()
            process.wait(10)
        label = f"{name} ({uvicorn_flavour()})" if name.startswith("uvicorn") else f"{name} (asyncio)"
        print(f"| {label} | {best[0]:,.0f} | {best[1]:.3f} |")


if __name__ == "__main__":
    main()
