"""An OpenAI-compatible endpoint that answers at once, for measuring the client: aiohttp.web in a process of its
own, every distinct answer made once and kept, so its own cost per request is the floor aiohttp sets, not ours.

    python -m benchmarks.instant_server --port 8300 [--tokens 4] [--latency 0] [--token-s 0]

`/v1/completions` answers `n` choices of `--tokens` token ids each (or the request's `max_tokens` with
`--tokens 0`), as vLLM does with `return_tokens_as_token_ids`, with raw logprobs and, when `logprobs` asks for
more than one, that many top alternatives a token; `/v1/models` names the model `synthetic`; `/stats` counts
requests and the peak in flight. Each answer is held `--latency` seconds plus `--token-s` a token (a GPU's
batched decoding: requests in flight do not slow each other). Bound to 127.0.0.1 only.
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


def make_app(tokens: int, latency: float, token_s: float = 0.0) -> web.Application:
    bodies: dict[tuple[int, int, int], bytes] = {}
    models = json.dumps({"object": "list", "data": [{"id": "synthetic", "object": "model"}]}).encode()
    stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0}

    async def completions(request: web.Request) -> web.Response:
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            payload = json.loads(await request.read())
            length = tokens or int(payload.get("max_tokens") or 16)
            key = (min(MAX_N, int(payload.get("n") or 1)), length, int(payload.get("logprobs") or 0))
            body = bodies.get(key) or bodies.setdefault(key, completion_body(*key))
            if latency or token_s:
                await asyncio.sleep(latency + token_s * length)
            return web.Response(body=body, content_type="application/json")
        finally:
            stats["in_flight"] -= 1

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    async def counters(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.add_routes([web.post("/v1/completions", completions), web.get("/v1/models", listing),
                    web.get("/stats", counters)])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--token-s", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(make_app(args.tokens, args.latency, args.token_s), host="127.0.0.1", port=args.port, access_log=None,
                print=None, backlog=2048)


if __name__ == "__main__":
    main()
