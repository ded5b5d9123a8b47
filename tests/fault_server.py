"""A hostile OpenAI-compatible endpoint for tests and benchmarks, on 127.0.0.1 only.

It answers `/v1/completions` and `/v1/chat/completions` either with made-up tokens and logprobs
(`tests/synthetic_answers.py`) or by proxying to an upstream server (`python -m llama_cpp.server`), and injects
faults at configurable rates: 429 with Retry-After, 500, 503, hangs past the client's timeout, truncated JSON
bodies, connections reset mid-response, answers without logprobs, `n` ignored, and slow answers. It counts
requests and the peak number in flight, so tests can assert what the server saw. `GET /stats` returns the
counters as JSON.

Run it by hand: `python -m tests.fault_server --port 8123 --latency 0.3`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from tests.synthetic_answers import synthetic_chat, synthetic_completion, token_of, word

FAULTS = ("400", "429", "500", "503", "hang", "malformed", "reset", "no_logprobs")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class InFlightGroup:
    """Requests in flight across several servers (each on its own thread), and the peak: a global cap's test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0

    def change(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta
            self.peak = max(self.peak, self.in_flight)


@dataclass
class FaultConfig:
    rate_400: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_hang: float = 0.0
    rate_malformed: float = 0.0
    rate_reset: float = 0.0
    rate_no_logprobs: float = 0.0
    retry_after: float = 1.0
    retry_after_as_date: bool = False  # Retry-After as an HTTP date (its other form) rather than seconds
    hang_s: float = 30.0
    latency: float = 0.0  # added to every answer
    token_s: float = 0.0  # and this per token of its longest choice: a GPU server, whose requests in flight at once
    #                        do not slow each other down
    rate_slow: float = 0.0
    slow_s: float = 2.0
    rate_ignore_n: float = 0.0  # answers that return one choice whatever n asked for
    eos_rate: float = 0.0  # chance that a synthetic token ends the answer
    logprobs_mode: str = "raw"  # or "processed": report log q of the tempered draw, as vLLM can
    top_logprobs: bool = True  # return the top alternatives when asked
    top_logprobs_cap: int = 0  # return at most this many alternatives (OpenAI's API: 20, some servers 5); 0: any
    token_prompts: bool = True  # False: refuse token-id prompts with a 500 and answer in token strings (llama.cpp)
    finish_reason: str = ""  # when set, every answer reports this finish reason ("content_filter", "abort")
    scores_eos: bool = True  # False: the end-of-sequence token gets no logprob entry (llama.cpp)
    # How a text-only answer names the end-of-sequence token it scores, leaving it out of `text` every time: ""
    # (an empty string), its special string (e.g. "<|im_end|>"), or "token_id" (as vLLM names every token)
    eos_piece: str = ""
    chain: object = field(default=None, compare=False)  # a tests.synthetic.MarkovSampler to answer from
    echo_auth: bool = False  # error bodies quote the request's Authorization header
    seed: int = 0
    script: tuple[str, ...] = ()  # faults for the first requests, in order ("" for none); then the rates apply
    upstream: str | None = None  # proxy answers from this base URL instead of making them up
    answer_tokens: tuple[int, ...] = ()  # when set, every answer continues this sequence with certainty, then ends
    streams: bool = True  # answers `"stream": true` completions as server-sent events, a token per chunk
    stream_token_s: float = 0.0  # pause between streamed tokens
    capacity: int = 0  # requests worked on at once (each taking `latency`); 0: no limit
    model: str = ""  # another value makes up another model's distributions (a replica that is not one)
    group: InFlightGroup | None = field(default=None, compare=False, repr=False)  # counts in flight across servers
    arrivals_kept: int = 64  # enough for start-up measurements, bounded under load tests
    tokenizer_dialect: str = ""  # "vllm" or "llama.cpp": the server's own /tokenize and /detokenize (the embedded
    #                              model's vocabulary) in that server's format
    max_model_len: int = 0  # when set, /v1/models reports it, as vLLM does


    def rate(self, fault: str) -> float:
        return getattr(self, f"rate_{fault}")


@dataclass
class ServerStats:
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    answered: int = 0
    injected: Counter = field(default_factory=Counter)
    arrivals: list[float] = field(default_factory=list)  # wall-clock times of the first `arrivals_kept` requests
    authorizations: list[str] = field(default_factory=list)  # the Authorization headers of the first requests
    user_agents: list[str] = field(default_factory=list)  # and their User-Agent headers

    def as_dict(self) -> dict:
        data = asdict(self)
        data["injected"] = dict(self.injected)
        data["injected_total"] = sum(self.injected.values())
        return data


class FaultServer:
    def __init__(self, config: FaultConfig | None = None, *, port: int = 0):
        self.config = config or FaultConfig()
        self.port = port
        self.stats = ServerStats()
        self.rng = random.Random(self.config.seed)
        self._script = list(self.config.script)
        self.server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self._upstream = None
        self._capacity = asyncio.Semaphore(self.config.capacity) if self.config.capacity else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        if self.config.upstream:
            import httpx

            self._upstream = httpx.AsyncClient(base_url=self.config.upstream, timeout=600)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self.server.wait_closed()
        if self._upstream is not None:
            await self._upstream.aclose()

    # HTTP/1.1 with keep-alive, just enough for httpx ---------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, body, headers = request
                if path.endswith("/stats"):
                    await _respond(writer, 200, self.stats.as_dict())
                    continue
                if not await self._handle(reader, writer, method, path, body, headers):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return  # stopped: end quietly (Python 3.11's stream callback logs a cancelled task as an error)
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str,
                      body: bytes, headers: dict[str, str]) -> bool:
        """Answer one request; False when the connection must close."""
        arrived = time.perf_counter()
        stats, config = self.stats, self.config
        stats.requests += 1
        if len(stats.arrivals) < config.arrivals_kept:
            stats.arrivals.append(time.time())
        if len(stats.authorizations) < config.arrivals_kept:
            stats.authorizations.append(headers.get("authorization", ""))
            stats.user_agents.append(headers.get("user-agent", ""))
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        if self.config.group is not None:
            self.config.group.change(+1)
        left = False

        def leave() -> None:
            """Out of flight before the answer's last byte goes out: the client may send its next request to
            another server the moment it has it, and a group's peak must not count both."""
            nonlocal left
            if not left:
                left = True
                stats.in_flight -= 1
                if config.group is not None:
                    config.group.change(-1)

        async def respond(status: int, answer: dict, extra: dict | None = None) -> None:
            leave()
            await _respond(writer, status, answer, extra)

        try:
            routed = method == "POST" and path.endswith(("/completions", "/chat/completions"))
            fault = self._draw_fault() if routed else None
            payload = json.loads(body or b"{}") if routed else {}
            answer = None
            if routed and fault not in ("400", "429", "500", "503", "hang") and self._upstream is None:
                # The synthetic answer is made while the server "works", not after: 16 tokens cost ~1.5 ms of
                # Python, which added to `latency` held 50 requests at 0.5 s to 88 answers a second, not 100.
                answer = await self._answer(path, payload)
            if routed and (config.latency or config.token_s):  # /models and the tokenizer answer at once
                work = config.latency + config.token_s * _longest_choice(answer)
                remaining = max(0.0, work - (time.perf_counter() - arrived))
                if self._capacity is not None:
                    async with self._capacity:  # a server that works on so many requests at once; the rest queue
                        await asyncio.sleep(remaining)
                else:
                    await asyncio.sleep(remaining)
            if path.endswith("/models"):
                model = {"id": "synthetic", "object": "model"}
                if config.max_model_len:
                    model["max_model_len"] = config.max_model_len
                await respond(200, {"object": "list", "data": [model]})
                return True
            if path in TOKENIZER_ROUTES and method == "POST":
                try:
                    status, answer = tokenizer_answer(config.tokenizer_dialect, path, json.loads(body or b"{}"))
                except (KeyError, TypeError, ValueError) as exc:  # the other dialect's fields: refused, as servers do
                    status, answer = 400, {"error": {"message": f"bad tokenizer request: {exc!r}"}}
                await respond(status, answer)
                return True
            if not routed:
                await respond(404, {"error": {"message": f"no route {method} {path}"}})
                return True
            if fault:
                stats.injected[fault] += 1
            if fault in ("400", "429", "500", "503"):
                message = f"injected {fault}"
                if config.echo_auth:  # a careless server that quotes the request back in its error
                    message += f" (Authorization: {headers.get('authorization')})"
                extra = {"Retry-After": _retry_after(config)} if fault == "429" else {}
                await respond(int(fault), {"error": {"message": message}}, extra)
                return True
            if fault == "hang":
                # Hang until the client gives up (or hang_s passes), like a stuck upstream would.
                try:
                    await asyncio.wait_for(reader.read(1), config.hang_s)
                except TimeoutError:
                    pass
                writer.transport.abort()
                return False
            if config.rate_slow and self.rng.random() < config.rate_slow:
                stats.injected["slow"] += 1
                await asyncio.sleep(config.slow_s)
            status, answer = answer or await self._answer(path, payload)
            if (status == 200 and len(answer.get("choices", ())) > 1 and config.rate_ignore_n
                    and self.rng.random() < config.rate_ignore_n):
                stats.injected["ignored_n"] += 1
                answer["choices"] = answer["choices"][:1]
            if status == 200 and fault == "no_logprobs":
                for choice in answer["choices"]:
                    choice["logprobs"] = None
            if fault == "malformed":
                data = json.dumps(answer).encode()
                leave()
                await _respond_raw(writer, 200, data[: max(1, len(data) // 2)])
                return True
            if fault == "reset":
                data = json.dumps(answer).encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                leave()
                writer.write(head.encode() + data[: len(data) // 3])
                await writer.drain()
                _reset(writer)
                return False
            if status == 200 and payload.get("stream") and config.streams and "choices" in answer \
                    and not path.endswith("/chat/completions"):
                await _stream_completion(writer, answer, config.stream_token_s)
                stats.answered += 1
                return False  # the event stream ends with the connection
            await respond(status, answer)
            stats.answered += status == 200
            return True
        finally:
            leave()

    def inject(self, *faults: str) -> None:
        """Faults for the next requests, in order ("" for a clean answer); the rates apply after them."""
        self._script = list(faults)

    def _draw_fault(self) -> str | None:
        if self._script:
            return self._script.pop(0) or None
        roll = self.rng.random()
        for fault in FAULTS:
            roll -= self.config.rate(fault)
            if roll < 0:
                return fault
        return None

    async def _answer(self, path: str, payload: dict) -> tuple[int, dict]:
        if self._upstream is not None:
            route = "/chat/completions" if path.endswith("/chat/completions") else "/completions"
            response = await self._upstream.post(route, json=payload)
            return response.status_code, response.json()
        if not self.config.token_prompts and isinstance(payload.get("prompt"), list):
            return 500, {"error": {"message": "Input validation error: prompt must be a string"}}
        if path.endswith("/chat/completions"):
            return 200, synthetic_chat(self.config, payload)
        return 200, synthetic_completion(self.config, payload)

def _retry_after(config: FaultConfig) -> str:
    if config.retry_after_as_date:
        import email.utils

        return email.utils.formatdate(time.time() + config.retry_after + 1, usegmt=True)  # whole seconds: +1
    return f"{config.retry_after:g}"


TOKENIZER_ROUTES = ("/tokenize", "/detokenize", "/apply-template")


def tokenizer_answer(dialect: str, path: str, payload: dict) -> tuple[int, dict]:
    """The embedded model's tokenizer behind vLLM's or llama.cpp's routes, each answering in its own fields."""
    from engine.backends.tokenizers import load_tokenizer
    from engine.sampler import Message

    tokenizer = _embedded_tokenizer(load_tokenizer)
    if dialect == "vllm" and path == "/tokenize":
        if "messages" in payload:
            tokens = tokenizer.render([Message(m["role"], m["content"]) for m in payload["messages"]])
        else:
            tokens = tokenizer.encode_prompt(payload["prompt"])
        return 200, {"count": len(tokens), "max_model_len": 2048, "tokens": tokens}
    if dialect == "vllm" and path == "/detokenize":
        return 200, {"prompt": tokenizer.decode(payload["tokens"])}
    if dialect == "llama.cpp" and path == "/tokenize":
        text = payload["content"]
        return 200, {"tokens": tokenizer.encode_prompt(text) if payload.get("parse_special") else
                     tokenizer.encode(text)}
    if dialect == "llama.cpp" and path == "/detokenize":
        return 200, {"content": tokenizer.decode(payload["tokens"])}
    if dialect == "llama.cpp" and path == "/apply-template":
        return 200, {"prompt": tokenizer.chat_prompt([Message(m["role"], m["content"]) for m in payload["messages"]])}
    return 404, {"error": {"message": f"no route POST {path}"}}


_TOKENIZER = []


def _embedded_tokenizer(load):
    if not _TOKENIZER:
        _TOKENIZER.append(load("embedded"))
    return _TOKENIZER[0]


def _longest_choice(answer: tuple[int, dict] | None) -> int:
    """Tokens in the answer's longest choice (chat or completion): what a batched decode waits for."""
    if answer is None or answer[0] != 200:
        return 0
    return max((len((choice.get("logprobs") or {}).get("token_logprobs") or (choice.get("logprobs") or {})
                    .get("content") or ()) for choice in answer[1].get("choices", ())), default=0)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes, dict[str, str]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return method, path, body, headers


async def _respond(writer: asyncio.StreamWriter, status: int, payload: dict, headers: dict | None = None) -> None:
    await _respond_raw(writer, status, json.dumps(payload).encode(), headers)


async def _respond_raw(writer: asyncio.StreamWriter, status: int, data: bytes, headers: dict | None = None) -> None:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Content-Type: application/json",
             f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    await writer.drain()


async def _stream_completion(writer: asyncio.StreamWriter, answer: dict, pause_s: float) -> None:
    """The answer as a /v1/completions event stream: a chunk per token per choice, as vLLM sends them with
    logprobs, then one with each choice's finish reason, then [DONE]."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")

    async def send(choices: list[dict]) -> None:
        writer.write(b"data: " + json.dumps({"id": answer["id"], "object": "text_completion",
                                               "model": answer["model"], "choices": choices}).encode() + b"\n\n")
        await writer.drain()

    longest = max((len(c["logprobs"]["tokens"]) for c in answer["choices"] if c["logprobs"]), default=0)
    for position in range(longest):
        chunk = []
        for choice in answer["choices"]:
            logprobs = choice["logprobs"]
            if logprobs and position < len(logprobs["tokens"]):
                top = logprobs["top_logprobs"]
                chunk.append({"index": choice["index"], "text": word(token_of(logprobs["tokens"][position])),
                              "finish_reason": None, "logprobs": {
                                  "tokens": [logprobs["tokens"][position]],
                                  "token_logprobs": [logprobs["token_logprobs"][position]],
                                  "top_logprobs": [top[position]] if top else None, "text_offset": None}})
        await send(chunk)
        if pause_s:
            await asyncio.sleep(pause_s)
    await send([{"index": c["index"], "text": "", "finish_reason": c["finish_reason"], "logprobs": None}
                for c in answer["choices"]])
    writer.write(b"data: [DONE]\n\n")
    await writer.drain()
    writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN, the way a crashed proxy drops a connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ThreadedFaultServer:
    """The server on its own event loop in a daemon thread, for tests that drive it from outside."""

    def __init__(self, config: FaultConfig | None = None, *, port: int = 0):
        self.server = FaultServer(config, port=port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fault-server", daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc) -> None:
        self.kill()

    def kill(self) -> None:
        """Stop listening and drop every open connection, as a crashed server would."""
        if not self.loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8123)
    for name, value in asdict(FaultConfig()).items():
        if name in ("group", "chain"):
            continue  # for servers in one test process
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # --name or --no-name, defaulting to the config's own default
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            parser.add_argument(flag, type=lambda text: tuple(text.split(",")), default=value)
        else:
            parser.add_argument(flag, type=type(value) if value is not None else str, default=value)
    args = vars(parser.parse_args())
    port = args.pop("port")
    server = FaultServer(FaultConfig(**args), port=port)

    async def serve() -> None:
        await server.start()
        print(f"fault server on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
