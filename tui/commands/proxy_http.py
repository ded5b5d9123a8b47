"""The HTTP face of `beamtui proxy`: aiohttp.web routes over the engine's ProxyService, server-sent events through
aiohttp-sse, every error an OpenAI error object, a bearer token checked on every route when one is set.

aiohttp.web was chosen by measurement (benchmarks.proxy_server_choice, 200 clients on 2 cores): 6,952 requests
a second at 0.142 ms of server CPU each, against uvicorn with Starlette at its fastest (httptools, uvloop) 6,461 at
0.137 ms; a tie, so the dependency beamtui has already, with aiohttp-sse for the streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import signal
import sys
from collections.abc import Callable

import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from engine import event_log
from engine.proxy.metrics import CONTENT_TYPE
from engine.proxy.requests import ProxyError
from engine.proxy.service import KEEPALIVE_S, ProxyService

MAX_BODY = 1 << 20  # 1 MiB: far more than any prompt the proxy takes, far less than a careless client sends
EVENTS_BUFFERED = 10_000  # a watcher that falls this far behind loses the oldest events, not the proxy's memory
API = ("/v1/chat/completions", "/v1/completions")
YOUNG_COLLECTION = 10_000  # container allocations between collections of young objects; Python's default is 700


def make_app(service: ProxyService, *, token: str | None, log: Callable[[str], None]) -> web.Application:
    """The routes: /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics, /beamtui/v1/events."""

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            return await handler(request)
        except ProxyError as exc:
            return error_response(exc, request, log)
        except web.HTTPException as exc:  # no route, wrong method, body too large: said as the API says it
            if exc.status < 400:
                raise
            return error_response(ProxyError(exc.status, _http_reason(exc, request)), request, log)

    @web.middleware
    async def auth(request: web.Request, handler):
        if token is not None:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                raise ProxyError(401, "this proxy needs its API key: Authorization: Bearer <key>",
                                 code="invalid_api_key")
        return await handler(request)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await complete(request, "chat")

    async def completions(request: web.Request) -> web.StreamResponse:
        return await complete(request, "completions")

    async def complete(request: web.Request, kind: str) -> web.StreamResponse:
        parsed = service.parse(kind, await read_json(request))
        with service.admitted():
            if not parsed.stream:
                return web.Response(body=orjson.dumps(await service.complete(parsed)), content_type="application/json")
            async with sse_response(request, ping_interval=KEEPALIVE_S, allow_all_methods=True) as events:
                async with contextlib.aclosing(service.stream(parsed)) as chunks:
                    async for chunk in chunks:
                        if chunk is not None:  # None: still searching; the stream's pings say so
                            await events.send(_dumps(chunk))
                await events.send("[DONE]")
            return events

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": service.models()})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "requests_in_hand": service.active})

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=service.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    watchers: set[asyncio.Queue] = set()

    async def events(request: web.Request) -> web.StreamResponse:
        """Every event of every search, as JSON records (engine.event_log), for `beamtui watch` elsewhere."""
        queue: asyncio.Queue = asyncio.Queue(EVENTS_BUFFERED)

        def sink(event) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

        service.sinks.append(sink)
        watchers.add(queue)
        try:
            async with sse_response(request, ping_interval=KEEPALIVE_S) as stream:
                while (event := await queue.get()) is not None:
                    await stream.send(_dumps(event_log.to_record(event)))
        finally:
            service.sinks.remove(sink)
            watchers.discard(queue)
        return stream

    async def end_watchers(app: web.Application) -> None:
        """At shutdown the event streams end, so the server does not wait on watchers that never leave."""
        for queue in list(watchers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors, auth])
    app.on_shutdown.append(end_watchers)
    app.add_routes([web.post(API[0], chat), web.post(API[1], completions), web.get("/v1/models", models),
                    web.get("/health", health), web.get("/metrics", metrics),
                    web.get("/beamtui/v1/events", events)])
    return app


async def read_json(request: web.Request) -> object:
    """The body as JSON: a 413 past MAX_BODY, a 400 for bytes that are not UTF-8 or text that is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProxyError(400, "the request body is not UTF-8") from None
    except ValueError as exc:
        raise ProxyError(400, f"the request body is not JSON ({exc.msg} at character {exc.pos})") from None


def error_response(exc: ProxyError, request: web.Request, log: Callable[[str], None]) -> web.Response:
    log(f"{exc.status} {request.method} {request.path}: {exc.message}")
    response = web.json_response(exc.body(), status=exc.status)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = f"{exc.retry_after:g}"
    return response


def _http_reason(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no route {request.path}; the API is at {', '.join(API)}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return f"the request body is larger than {MAX_BODY:,} bytes"
    return exc.reason or f"HTTP {exc.status}"


def settle_heap() -> None:
    """A server's collector: the start-up heap (the SDK's types, the tokenizer, ~120,000 objects that never become
    garbage) frozen out of every collection, and young objects collected every 10,000 allocations instead of 700.
    benchmarks.proxy_load: with Python's defaults the collector took 3.0 s of the proxy's CPU over the run (its
    18 full collections 92 ms each), so 0.85 s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])


def _dumps(data) -> str:
    return orjson.dumps(data).decode()


async def serve(service: ProxyService, host: str, port: int, token: str | None, text: str,
                log=None, ready=None, stop: asyncio.Event | None = None, settle: bool = True) -> int:
    """Start the upstream, listen, and answer until SIGINT or SIGTERM (or `stop` is set). `settle`: set the
    process's collector for a server (`settle_heap`), once the upstream is open."""
    log = log or (lambda line: print(f"beamtui proxy: {line}", file=sys.stderr, flush=True))
    await service.start()
    if settle:
        settle_heap()
    runner = web.AppRunner(make_app(service, token=token, log=log), handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        if ready is not None:
            ready()
        else:
            print(text, flush=True)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: the dashboard stops it
                loop.add_signal_handler(number, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await service.aclose()
    return 0
