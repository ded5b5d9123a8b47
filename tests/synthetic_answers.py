"""The fault server's own answers: `/v1/completions` and `/v1/chat/completions` bodies with logprobs, made up
per position from a small distribution and tempered like a real server's. Deterministic in (prompt, seed,
choice index, temperature), like a seeded server.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fault_server import FaultConfig

EOS_TOKEN = 2
VOCAB = (100, 4000)
CHOICES = 8  # tokens each position's made-up distribution spreads over

Drawn = list[tuple[int, float, dict[int, float]]]  # (token, its reported logprob, the alternatives) per position


def synthetic_completion(config: FaultConfig, payload: dict) -> dict:
    prompt = payload.get("prompt")
    as_ids = bool(payload.get("return_tokens_as_token_ids")) and config.token_prompts
    top_k = _alternatives(config, int(payload.get("logprobs") or 0))
    text_of = _text_of(config)
    choices = []
    for index in range(int(payload.get("n") or 1)):
        drawn, finish = _scored(config, _tokens(config, payload, json.dumps(prompt), index))
        name = (lambda t: f"token_id:{t}") if as_ids else _piece_of(config)
        top = [dict(sorted(((name(t), lp) for t, lp in alts.items()), key=lambda kv: -kv[1])[:top_k])
               for _, _, alts in drawn] if top_k > 1 else None
        choices.append({
            "index": index,
            "text": "".join(text_of(t) for t, _, _ in drawn),
            "finish_reason": finish,
            "logprobs": {
                "tokens": [name(t) for t, _, _ in drawn],
                "token_logprobs": [lp for _, lp, _ in drawn],
                "top_logprobs": top,
                "text_offset": None,
            },
        })
    return {"id": "cmpl-synthetic", "object": "text_completion", "created": int(time.time()),
            "model": payload.get("model", "synthetic"), "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": sum(len(c["logprobs"]["token_logprobs"])
                                                                   for c in choices), "total_tokens": 0}}


def synthetic_chat(config: FaultConfig, payload: dict) -> dict:
    key = json.dumps(payload.get("messages"))
    top_k = _alternatives(config, int(payload.get("top_logprobs") or 0))
    text_of = _text_of(config)
    choices = []
    for index in range(int(payload.get("n") or 1)):
        drawn, finish = _scored(config, _tokens(config, payload, key, index))
        content = [{"token": text_of(t), "logprob": lp, "bytes": list(text_of(t).encode()),
                    "top_logprobs": [{"token": text_of(alt), "logprob": alt_lp}
                                     for alt, alt_lp in sorted(alts.items(), key=lambda kv: -kv[1])[:top_k]]
                    if top_k > 1 else []}
                   for t, lp, alts in drawn]
        choices.append({
            "index": index,
            "message": {"role": "assistant", "content": "".join(text_of(t) for t, _, _ in drawn)},
            "finish_reason": finish,
            "logprobs": {"content": content} if payload.get("logprobs") else None,
        })
    return {"id": "chatcmpl-synthetic", "object": "chat.completion", "created": int(time.time()),
            "model": payload.get("model", "synthetic"), "choices": choices}


def word(token: int) -> str:
    """A token's text: a word of its own, so the text of an answer tells its tokens apart."""
    return "" if token == EOS_TOKEN else f" w{token}"


def token_of(name: str) -> int:
    return int(name.split(":")[1]) if name.startswith("token_id:") else -1


def _alternatives(config: FaultConfig, asked: int) -> int:
    """How many alternatives a position gets: what was asked, within the server's own limit."""
    if not config.top_logprobs:
        return 0
    return min(asked, config.top_logprobs_cap) if config.top_logprobs_cap else asked


def _text_of(config: FaultConfig):
    """A token's text: the chain's word after a space (its end of sequence has none), or a made-up word."""
    if config.chain is None:
        return word
    words, eos = config.chain.words, config.chain.eos
    return lambda token: "" if token == eos else f" {words[token]}"


def _piece_of(config: FaultConfig):
    """A token's name in a text-only answer's `logprobs.tokens`: its text, but the end-of-sequence token by the
    server's convention (config.eos_piece), which its `text` never shows."""
    text_of = _text_of(config)
    eos = config.chain.eos if config.chain is not None else EOS_TOKEN
    if not config.eos_piece:
        return text_of
    piece = f"token_id:{eos}" if config.eos_piece == "token_id" else config.eos_piece
    return lambda token: piece if token == eos else text_of(token)


def _scored(config: FaultConfig, drawn: Drawn) -> tuple[Drawn, str]:
    """The tokens a server reports, and its finish reason. A server that does not score the end-of-sequence
    token (llama.cpp's) leaves it out."""
    finish = config.finish_reason or _finish(config, drawn)
    if finish == "stop" and not config.scores_eos:
        drawn = drawn[:-1]
    return drawn, finish


def _tokens(config: FaultConfig, payload: dict, key: str, index: int) -> Drawn:
    if config.answer_tokens:
        return _scripted(config.answer_tokens, payload)
    seed = f"{key}|{payload.get('seed')}|{index}|{payload.get('temperature')}"
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    temperature = float(payload.get("temperature", 1.0) if payload.get("temperature") is not None else 1.0)
    processed = config.logprobs_mode == "processed" and temperature not in (0.0, 1.0)
    if config.chain is not None:
        return _chain_tokens(config, payload, rng, temperature, processed)
    drawn = []
    # Each position's distribution, drawn in turn from one stream: the same whatever the temperature, as a
    # model's would be. One seeded stream, not one per position, and no `sample`: the server shares the
    # client's two cores in benchmarks, and an answer of 16 tokens took 1.0 ms to make and encode (now 0.5).
    shapes = random.Random(hashlib.sha256(f"{config.model}{key}|{index}".encode()).digest())
    for _ in range(int(payload.get("max_tokens") or 16)):
        if config.eos_rate and rng.random() < config.eos_rate:
            # Its log p is the chance of ending, the same at every temperature, and it is its own alternative:
            # a real server lists the sampled token among the top ones, and a probe reads them.
            ending = math.log(config.eos_rate)
            drawn.append((EOS_TOKEN, ending, {EOS_TOKEN: ending}))
            break
        first = shapes.randrange(VOCAB[0], VOCAB[1] - CHOICES)
        choices = range(first, first + CHOICES)  # neighbours: their logits are what is random
        logits = [3 * shapes.random() for _ in choices]
        raw = _log_softmax(logits)
        sampled = _log_softmax([v / temperature for v in logits]) if temperature > 0 else raw
        pick = raw.index(max(raw)) if temperature == 0 else _draw(sampled, rng.random())
        reported = sampled if processed else raw
        drawn.append((choices[pick], reported[pick], dict(zip(choices, reported, strict=True))))
    return drawn


def _scripted(script: tuple[int, ...], payload: dict) -> Drawn:
    """The rest of `script` after the longest part of it that the (token) prompt already ends with."""
    prompt = payload.get("prompt")
    prompt = prompt if isinstance(prompt, list) else []
    done = max((j for j in range(len(script) + 1) if j <= len(prompt) and prompt[len(prompt) - j:] ==
                list(script[:j])), default=0)
    rest = [*script[done:], EOS_TOKEN][:int(payload.get("max_tokens") or 16)]
    return [(token, 0.0, {token: 0.0}) for token in rest]


def _chain_tokens(config: FaultConfig, payload: dict, rng: random.Random, temperature: float,
                  processed: bool) -> Drawn:
    """A draw from the enumerable chain of tests/synthetic.py, from where the prompt leaves it, each token with
    the raw log p (or, `processed`, the log q it was drawn with) of it and of every alternative."""
    from tests.synthetic import chain_state

    chain = config.chain
    messages = payload.get("messages")
    prompt = payload.get("prompt") if messages is None else "".join(m["content"] for m in messages)
    state = chain_state(chain, prompt)
    drawn: Drawn = []
    for _ in range(int(payload.get("max_tokens") or 16)):
        probs = chain.next_probs(state)
        possible = [t for t, p in enumerate(probs) if p > 0]
        raw = [math.log(probs[t]) for t in possible]
        tempered = _log_softmax([v / temperature for v in raw]) if temperature > 0 else raw
        pick = raw.index(max(raw)) if temperature == 0 else _draw(tempered, rng.random())
        reported = tempered if processed else raw
        state = possible[pick]
        drawn.append((state, reported[pick], dict(zip(possible, reported, strict=True))))
        if state == chain.eos:
            break
    return drawn


def _finish(config: FaultConfig, drawn: Drawn) -> str:
    end = config.chain.eos if config.chain is not None else EOS_TOKEN
    return "stop" if drawn and drawn[-1][0] == end else "length"


def _log_softmax(values: list[float]) -> list[float]:
    top = max(values)
    total = math.log(sum(math.exp(v - top) for v in values))
    return [v - top - total for v in values]


def _draw(logprobs: list[float], uniform: float) -> int:
    cumulative = 0.0
    for index, logprob in enumerate(logprobs):
        cumulative += math.exp(logprob)
        if uniform < cumulative:
            return index
    return len(logprobs) - 1
