"""A tiny language model whose whole distribution can be enumerated: a Markov chain over a few words.

It speaks the engine's Sampler protocol, so every strategy runs on it through the real request layer, and its
exact power distribution p^alpha over short answers is computed by enumeration: the right tool for proving a
sampler exact. It can also add latency, or share a fixed token throughput among concurrent requests like a
compute-bound server does.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Sequence

from engine.backends.chat_rendering import RendersChat
from engine.sampler import EXACT, Continuation, LogprobQuality, Message, SamplerDefaults, SampleRequest, Send

PROMPT_TOKEN = 10_000  # the whole prompt: the chain starts from here
WORDS = ("red", "blue", "green", "gold")

# State 0 spreads its next word evenly; state 1 almost always says "green". Per-state normalisers differ, so
# tempering each token (temperature 1/alpha) is far from p^alpha over whole answers: TV 0.33 at alpha 2.
START = (0.5, 0.4, 0.05, 0.05)
TRANSITIONS = (
    (0.25, 0.25, 0.25, 0.25),
    (0.02, 0.02, 0.9, 0.06),
    (0.3, 0.4, 0.2, 0.1),
    (0.4, 0.2, 0.2, 0.2),
)


class MarkovSampler(SamplerDefaults):
    """Answers are word sequences; it never ends one early, so answers have exactly max_tokens words."""

    name = "markov"
    chat_template = "none"
    model_name = "markov-4"

    def __init__(self, start=START, transitions=TRANSITIONS, *, latency: float = 0.0,
                 tokens_per_s: float | None = None, words: Sequence[str] = WORDS, eos: int | None = None,
                 seconds_per_token: float = 0.0, name: str = "markov"):
        self.start_probs = start
        self.transitions = transitions
        self.latency = latency
        self.seconds_per_token = seconds_per_token
        self.words = words
        self.eos = eos  # a word that ends the answer; None: answers always run to max_tokens
        self.name = name
        self.requests = 0
        self.tokens_per_s = tokens_per_s  # set: concurrent requests share this throughput, one token at a time
        self._decoder = asyncio.Lock() if tokens_per_s else None

    async def start(self, send: Send) -> None:
        return None

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        return EXACT

    def next_probs(self, state: int) -> Sequence[float]:
        return self.start_probs if state == PROMPT_TOKEN else self.transitions[state]

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        self.requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        rngs = [random.Random(request.seed * 1009 + index) for index in range(request.n)]
        states = [request.prompt_ids[-1]] * request.n
        tokens = [[] for _ in range(request.n)]
        logprobs = [[] for _ in range(request.n)]
        proposal = [[] for _ in range(request.n)]
        alternatives = [[] for _ in range(request.n)]
        entropies = [[] for _ in range(request.n)]
        done = [False] * request.n
        if request.watch is not None:
            for index in range(request.n):
                request.watch(index, tokens[index], logprobs[index])
        for _ in range(request.max_tokens):
            if all(done):
                break
            if self._decoder is not None:
                async with self._decoder:  # one token at a time, whoever asks: a compute-bound server
                    await asyncio.sleep(request.n / self.tokens_per_s)
            elif self.seconds_per_token:
                await asyncio.sleep(self.seconds_per_token)
            for index in range(request.n):
                if done[index]:
                    continue
                probs = self.next_probs(states[index])
                token, log_q = draw(probs, request.temperature, rngs[index].random())
                if request.top_logprobs:
                    alternatives[index].append(top_alternatives(probs, request.top_logprobs))
                entropies[index].append(-math.fsum(p * math.log(p) for p in probs if p > 0))
                logprobs[index].append(math.log(probs[token]))
                proposal[index].append(log_q)
                tokens[index].append(token)
                states[index] = token
                done[index] = token == self.eos
        return [Continuation(tuple(t), self.detokenize(t), tuple(lp), "stop" if t and t[-1] == self.eos else "length",
                             tuple(q), tuple(a) if request.top_logprobs else None,
                             entropies=tuple(h) if request.entropies else None)
                for t, lp, q, a, h in zip(tokens, logprobs, proposal, alternatives, entropies, strict=True)]

    def tokenize(self, text: str) -> list[int]:
        return [self.words.index(word) for word in text.split()]

    def is_end(self, token_id: int) -> bool:
        return token_id == self.eos

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(_spaced(self.words[t]) for t in token_ids if t != PROMPT_TOKEN).strip()

    def render_chat(self, messages: Sequence[Message]) -> list[int]:
        return [PROMPT_TOKEN]

    def render_prompt(self, prompt: str) -> list[int]:
        return [PROMPT_TOKEN]

    async def aclose(self) -> None:
        return None


def top_alternatives(probs: Sequence[float], count: int) -> tuple[tuple[int, float], ...]:
    """The `count` likeliest next tokens with their raw log p, best first (as many at every position, as Tinker
    gives them: an impossible token has log p = -inf)."""
    ranked = sorted(range(len(probs)), key=lambda t: -probs[t])[:count]
    return tuple((t, math.log(probs[t]) if probs[t] > 0 else -math.inf) for t in ranked)


class ChainTokenizer(RendersChat):
    """The engine's Tokenizer protocol over a chain's words, so a remote backend (OpenAI over HTTP, Tinker) can
    run on the chain: a word's text is the word after a space, the end-of-sequence token has no text, and the
    whole prompt is one token whose text ends in a marker that is no word of the chain."""

    template = "chain"
    PROMPT_END = "<|answer|>"
    eos_text = "<|end|>"  # the end-of-sequence token's special string, which no answer's text shows

    def __init__(self, sampler: MarkovSampler):
        self.words = sampler.words
        self.eos_id = sampler.eos

    def encode(self, text: str) -> list[int]:
        return [self.words.index(word) for word in text.split()]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(f" {self.words[t]}" for t in token_ids if t not in (PROMPT_TOKEN, self.eos_id))

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        return "".join(m.content for m in messages) + " " + self.PROMPT_END

    def encode_prompt(self, prompt: str) -> list[int]:
        return [PROMPT_TOKEN]


def chain_state(sampler: MarkovSampler, prompt: list[int] | str) -> int:
    """Where the chain stands after a prompt: its last word, or the start after the prompt itself."""
    if isinstance(prompt, str):
        words = prompt.split()
        return sampler.words.index(words[-1]) if words and words[-1] in sampler.words else PROMPT_TOKEN
    return prompt[-1] if prompt and 0 <= prompt[-1] < len(sampler.words) else PROMPT_TOKEN


def _spaced(word: str) -> str:
    return word if word in ".,;" else " " + word


def word_chain(corpus: str, *, ends: bool = True, **options) -> MarkovSampler:
    """A bigram model of `corpus`: each word followed by the words that follow it there, as often as they do.
    A full stop ends the answer, unless `ends` is False; `options` go to MarkovSampler."""
    words = corpus.split()
    vocabulary = tuple(dict.fromkeys(words))
    index = {word: i for i, word in enumerate(vocabulary)}
    follows = [[0] * len(vocabulary) for _ in vocabulary]
    for first, second in zip(words, words[1:], strict=False):
        if first != ".":
            follows[index[first]][index[second]] += 1
    starts = [0] * len(vocabulary)
    for first, second in zip(["."] + words, words, strict=False):
        if first == ".":
            starts[index[second]] += 1
    follows[index["."]] = starts  # never used: the full stop ends the answer
    normalise = lambda counts: tuple(c / sum(counts) for c in counts)  # noqa: E731
    return MarkovSampler(normalise(starts), tuple(normalise(row) for row in follows), words=vocabulary,
                         eos=index["."] if ends else None, **options)


SKY_CORPUS = (
    "The sky is blue because sunlight scatters off the air . "
    "The sky is blue because blue light scatters more than red light . "
    "Sunlight is made of every colour , and the air scatters blue light the most . "
    "The air scatters short waves of light more than long waves . "
    "Blue light has short waves , so the sky looks blue to us . "
    "At sunset the light travels through more air , so the sky looks red . "
    "The sky looks blue because the air scatters sunlight . "
)


def draw(probs: Sequence[float], temperature: float, uniform: float) -> tuple[int, float]:
    """A token from probs^(1/temperature), renormalised, and its log-probability under that distribution."""
    if temperature == 0:
        return max(range(len(probs)), key=probs.__getitem__), 0.0
    tempered = [p ** (1 / temperature) for p in probs]
    total = sum(tempered)
    point, cumulative = uniform * total, 0.0
    for token, weight in enumerate(tempered):
        cumulative += weight
        if point < cumulative:
            return token, math.log(weight / total)
    return len(probs) - 1, math.log(tempered[-1] / total)


def sequence_logprob(sampler: MarkovSampler, tokens: Sequence[int]) -> float:
    state, total = PROMPT_TOKEN, 0.0
    for token in tokens:
        total += math.log(sampler.next_probs(state)[token])
        state = token
    return total


def answers(sampler: MarkovSampler, length: int) -> list[tuple[int, ...]]:
    """Every answer of at most `length` words: ended by the end-of-sequence word, or cut at `length`."""
    if sampler.eos is None:
        return list(itertools.product(range(len(sampler.start_probs)), repeat=length))
    found, growing = [], [()]
    for _ in range(length):
        grown = []
        for seq in growing:
            state = seq[-1] if seq else PROMPT_TOKEN
            for token, prob in enumerate(sampler.next_probs(state)):
                if prob > 0:
                    (found if token == sampler.eos else grown).append(seq + (token,))
        growing = grown
    return found + growing


def power_distribution(sampler: MarkovSampler, alpha: float, length: int) -> dict[tuple[int, ...], float]:
    """The exact p^alpha over every answer of at most `length` words, normalised."""
    weights = {seq: math.exp(alpha * sequence_logprob(sampler, seq)) for seq in answers(sampler, length)}
    total = sum(weights.values())
    return {seq: w / total for seq, w in weights.items()}


def tempered_distribution(sampler: MarkovSampler, temperature: float, length: int) -> dict[tuple[int, ...], float]:
    """What sampling each token at `temperature` gives over whole answers."""
    def tempered(probs):
        weights = [p ** (1 / temperature) for p in probs]
        return [w / sum(weights) for w in weights]

    result = {}
    for seq in answers(sampler, length):
        state, prob = PROMPT_TOKEN, 1.0
        for token in seq:
            prob *= tempered(sampler.next_probs(state))[token]
            state = token
        result[seq] = prob
    return result


def total_variation(counts: dict, exact: dict[tuple[int, ...], float]) -> float:
    total = sum(counts.values())
    keys = set(counts) | set(exact)
    return 0.5 * sum(abs(counts.get(k, 0) / total - exact.get(k, 0.0)) for k in keys)
