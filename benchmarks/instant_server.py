"""An OpenAI-compatible endpoint that answers at once, for measuring the client: aiohttp.web in a process of its
own, every distinct answer made once and kept, so its own cost per request is the floor aiohttp sets, not ours.

    python -m benchmarks.instant_server --port 8300 [--tokens 4] [--latency 0] [--token-s 0] [--asyncio]

`/v1/completions` answers `n` choices of `--tokens` token ids each (or the request's `max_tokens` with
`--tokens 0`), as vLLM does with `return_tokens_as_token_ids`, with raw logprobs and, when `logprobs` asks for
more than one, that many top alternatives a token; `/v1/models` names the model `synthetic`; `/stats` counts
requests and the peak in flight. Each answer is held `--latency` seconds plus `--token-s` a token (a GPU's
batched decoding: requests in flight do not slow each other). Bound to 127.0.0.1 only.

`--asyncio` serves the same routes from a bare asyncio protocol (HTTP/1.1 with Content-Length, keep-alive) instead
of aiohttp.web: a tenth of its cost a request, and answers written from a timer the moment they are due, so that
a server's own handling adds as little as can be to what a client measures against its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

MAX_N = 64
FIRST_TOKEN = 1000  # ids in the embedded model's vocabulary, whose text is plain


def completion_body(n: int, tokens: int, alternatives: int = 0) -> bytes:
    top = [{f"token_id:{FIRST_TOKEN + i + k}": -0.5 - k for k in range(alternatives)} for i in range(tokens)] \
        if alternatives > 1 else None
    choice = {"text": "", "finish_reason": "length",
              "logprobs": {"tokens": [f"token_id:{FIRST_TOKEN + i}" for i in range(tokens)],
                           "token_logprobs": [-0.5] * tokens, "top_logprobs": top, "text_offset": None}}
    return json.dumps({"id": "cmpl-instant", "object": "text_completion", "created": 0, "model": "synthetic",
                       "choices": [dict(choice, index=i) for i in range(n)],
                       "usage": {"prompt_tokens": 0, "completion_tokens": n * tokens,
                                 "total_tokens": n * tokens}}).encode()


class Answers:
    """Every distinct answer body made once, and the counters `/stats` reports."""

    def __init__(self, tokens: int, latency: float, token_s: float):
        self.tokens, self.latency, self.token_s = tokens, latency, token_s
        self.bodies: dict[tuple[int, int, int], bytes] = {}
        self.models = json.dumps({"object": "list", "data": [{"id": "synthetic", "object": "model"}]}).encode()
        self.stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0}

    def begin(self, payload: bytes) -> tuple[bytes, float]:
        """A completion request arrived: its answer and how long to hold it."""
        stats = self.stats
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        request = json.loads(payload)
        length = self.tokens or int(request.get("max_tokens") or 16)
        key = (min(MAX_N, int(request.get("n") or 1)), length, int(request.get("logprobs") or 0))
        body = self.bodies.get(key) or self.bodies.setdefault(key, completion_body(*key))
        return body, self.latency + self.token_s * length if self.latency or self.token_s else 0.0

    def end(self) -> None:
        self.stats["in_flight"] -= 1


def make_app(tokens: int, latency: float, token_s: float = 0.0) -> web.Application:
    answers = Answers(tokens, latency, token_s)

    async def completions(request: web.Request) -> web.Response:
        try:
            body, hold = answers.begin(await request.read())
            if hold:
                await asyncio.sleep(hold)
            return web.Response(body=body, content_type="application/json")
        finally:
            answers.end()

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=answers.models, content_type="application/json")

    async def counters(request: web.Request) -> web.Response:
        return web.json_response(answers.stats)

    app = web.Application()
    app.add_routes([web.post("/v1/completions", completions), web.get("/v1/models", listing),
                    web.get("/stats", counters)])
    return app


def http_answer(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(body))
            + body)


class BareHTTP(asyncio.Protocol):
    """The same routes on a bare asyncio protocol: requests parsed by their Content-Length, answers written by
    a timer callback when due (or at once), in the order they were asked on each connection."""

    def __init__(self, answers: Answers):
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.pending: list[list] = []  # [due answer or None] per request on this connection, in order

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
            length = int(next((v for k, v in fields.items() if k.lower() == "content-length"), "0"))
            if len(self.buffer) < end + 4 + length:
                return
            payload, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            self.route(head[0].split(" ")[:2], payload)

    def route(self, line: list[str], payload: bytes) -> None:
        method, path = line if len(line) == 2 else ("", "")
        if method == "POST" and path == "/v1/completions":
            body, hold = self.answers.begin(payload)
            slot = [None]
            self.pending.append(slot)
            asyncio.get_running_loop().call_later(hold, self.due, slot, http_answer(body))
            return
        if method == "GET" and path == "/v1/models":
            answer = http_answer(self.answers.models)
        elif method == "GET" and path == "/stats":
            answer = http_answer(json.dumps(self.answers.stats).encode())
        else:
            answer = http_answer(b'{"error": {"message": "not found"}}', b"404 Not Found")
        self.pending.append([answer])
        self.flush()

    def due(self, slot: list, answer: bytes) -> None:
        slot[0] = answer
        self.answers.end()
        self.flush()

    def flush(self) -> None:
        while self.pending and self.pending[0][0] is not None:
            answer = self.pending.pop(0)[0]
            if not self.transport.is_closing():
                self.transport.write(answer)


async def serve_bare(port: int, answers: Answers) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: BareHTTP(answers), "127.0.0.1", port,
                                                            backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--token-s", type=float, default=0.0)
    parser.add_argument("--asyncio", action="store_true", help="a bare asyncio protocol instead of aiohttp.web")
    args = parser.parse_args()
    if args.asyncio:
        asyncio.run(serve_bare(args.port, Answers(args.tokens, args.latency, args.token_s)))
        return
    web.run_app(make_app(args.tokens, args.latency, args.token_s), host="127.0.0.1", port=args.port, access_log=None,
                print=None, backlog=2048)


if __name__ == "__main__":
    main()
