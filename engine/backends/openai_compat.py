"""Any OpenAI-compatible endpoint (vLLM, llama.cpp's server, xAI, OpenAI) through `/v1/completions`.

Servers differ in ways that matter here, so `start()` probes once and adapts:
- vLLM takes token-id prompts and can answer with token ids; llama-cpp-python's server refuses token-id
  prompts (HTTP 500), so we send it the exact text of the prefix instead;
- some servers ignore `n` and return one choice; the request layer then sends separate requests.
Chat-only endpoints use `/v1/chat/completions` with `logprobs=true` (`api="chat"`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from engine.backends.openai_client import JSONClient
from engine.backends.server_tokenizer import ServerTokenizer
from engine.backends.tempering import estimated_entropy, estimated_log_p, estimated_log_q
from engine.backends.tokenizers import Tokenizer, TokenizerBacked, load_tokenizer
from engine.errors import BackendError, ConfigError
from engine.request_layer import settle
from engine.sampler import EXACT, Continuation, LogprobQuality, Message, SampleRequest, Send

TOKEN_ID_PREFIX = "token_id:"
PROBE_MESSAGES = (Message("user", "Say hi."),)
PROBE_REQUESTS = 4  # sent at once at start-up: the look at /models and three probes
PROBE_ALTERNATIVES = 5
PROBE_TEMPERATURE = 0.5
LOGPROB_ALTERNATIVES = 20  # asked for when one log-probability must be estimated from the other
REACH_TIMEOUT_S = 10.0  # the first look at a server: a refused port answers at once, a dead host within this


class OpenAISampler(TokenizerBacked):
    name = "openai"
    max_n = None

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        max_concurrent: int,
        timeout: float,
        api: str = "completions",
        tokenizer: str | None = None,
        loaded_tokenizer: Tokenizer | None = None,
    ):
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.api = api
        self.tokenizer_given = tokenizer  # --tokenizer; without one, the server's own, else the model's on the Hub
        self.tokenizer: Tokenizer | None = loaded_tokenizer
        self.timeout = timeout
        self.max_sequence_tokens: int | None = None  # vLLM says, in /v1/models
        self.honours_n = True
        self.token_prompts = True  # send prompts as token ids, unless the server refuses them
        self.alternatives = False  # the server returns the top alternatives at each position
        self.processed = False  # its logprobs are of the distribution it sampled from, not the raw model
        self.streams: bool | None = None  # streams completions with logprobs; found out by the first watched request
        self.client = JSONClient(base_url, api_key, max_concurrent, timeout)

    @property
    def model_name(self) -> str:
        return self.model

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        if temperature in (0.0, 1.0):
            return EXACT  # at 1 the two are one; at 0 the draw is certain, log q = 0
        known = "estimated" if self.alternatives else "unavailable"
        return LogprobQuality(known, "exact") if self.processed else LogprobQuality("exact", known)

    async def start(self, send: Send) -> None:
        """Probe, in one round trip, what the server does: token-id prompts, `n`, top alternatives, and whether
        its logprobs are raw or of the tempered distribution it sampled from (the same prompt at two
        temperatures: raw alternatives do not move). The server is looked at first, so a dead one is named as
        such, at once, before any tokenizer loads; with a tokenizer already loaded the look and the probes go
        out together, and the work starts one round trip after start-up."""
        reach = asyncio.ensure_future(self._reach())
        if self.tokenizer is None:
            await reach
            self.tokenizer = await asyncio.to_thread(self._load_tokenizer)
        probes = asyncio.ensure_future(self._probe(send))
        try:
            await reach  # a refused port fails here at once, while the probes would still be retrying it
        except BaseException:
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            raise
        await probes

    async def _probe(self, send: Send) -> None:
        prompt = tuple(self.render_chat(PROBE_MESSAGES))
        probe = SampleRequest(prompt, n=2, max_tokens=1, temperature=1.0, seed=0, messages=PROBE_MESSAGES,
                              prompt_len=len(prompt), top_logprobs=PROBE_ALTERNATIVES)
        tempered = dataclasses.replace(probe, n=1, temperature=PROBE_TEMPERATURE)
        self.token_prompts = False  # the probes through `send` go as text; the first asks for token ids itself
        ids_probe = self._takes_token_prompts(dataclasses.replace(probe, n=1)) if self.api == "completions" \
            else _constant(False)
        token_prompts, plain, hot = await asyncio.gather(ids_probe, send(probe), send(tempered),
                                                         return_exceptions=True)
        if isinstance(hot, BackendError) and hot.transient and not isinstance(plain, BaseException):
            hot = await settle(send(tempered))  # one more go before calling a flaky server unusable
        for outcome in (plain, hot):
            if isinstance(outcome, BackendError):
                raise ConfigError(self._probe_failure(outcome)) from None
            if isinstance(outcome, BaseException):
                raise outcome
        if isinstance(token_prompts, BaseException):
            raise token_prompts
        self.token_prompts = token_prompts
        self.honours_n = len(plain) >= 2
        plain_top, hot_top = _first_alternatives(plain[0]), _first_alternatives(hot[0])
        self.alternatives = bool(plain_top and hot_top)
        self.processed = self.alternatives and any(abs(a - b) > 1e-3 for a, b in zip(plain_top, hot_top, strict=False))

    async def _reach(self) -> None:
        """One GET of /models, never retried: a refused connection or an unknown host is a wrong URL, not a
        server to wait for. Its answer may say how long a sequence the model takes (vLLM's max_model_len)."""
        try:
            listing = await self.client.get("/models", min(self.timeout, REACH_TIMEOUT_S))
        except BackendError as exc:
            if exc.status in (401, 403):
                raise ConfigError(f"{self.base_url} refused the API key (HTTP {exc.status})") from None
            if exc.status is None:
                raise ConfigError(f"cannot reach {self.base_url}: {exc}") from None
            return  # it answers HTTP, if not this route: the probes will tell the rest
        except ValueError:
            return
        self.max_sequence_tokens = _max_model_len(listing, self.model)

    def _load_tokenizer(self) -> Tokenizer:
        """--tokenizer if given; else the server's own (exact ids, nothing downloaded); else the model's tokenizer
        from the local Hugging Face cache or the Hub."""
        if self.tokenizer_given:
            return load_tokenizer(self.tokenizer_given)
        own = ServerTokenizer.probe(self.base_url, self.model, self.api_key, min(self.timeout, REACH_TIMEOUT_S))
        if own is not None:
            return own
        try:
            return load_tokenizer(self.model)
        except ConfigError as exc:
            raise ConfigError(f"{self.base_url} has no tokenizer of its own (vLLM's or llama.cpp's /tokenize), and "
                              f"{exc}") from None

    async def _takes_token_prompts(self, probe: SampleRequest) -> bool:
        """Whether the server takes a token-id prompt. A refusal (400, 422, or llama.cpp's 500) is asked about
        twice, so that one injected 500 does not flip a server that does take token ids."""
        for _ in range(2):
            try:
                await self._sample(probe, token_prompt=True)
                return True
            except BackendError as exc:
                if exc.status not in (400, 422, 500):
                    return True  # not a refusal of the prompt's form: the text probes will tell what is wrong
        return False

    def _probe_failure(self, exc: BackendError) -> str:
        if exc.status in (401, 403):
            return f"{self.base_url} refused the API key (HTTP {exc.status})"
        if exc.status == 404:
            return f"{self.base_url} has no {self.api} endpoint or no model {self.model!r} ({exc})"
        if exc.status is None and "connection" in str(exc):
            return f"cannot reach {self.base_url}: {exc}"
        if "logprobs" in str(exc):
            return (
                f"{self.base_url} returned no logprobs for model {self.model!r}; search needs per-token "
                "logprobs (llama.cpp's server needs --logits_all true)"
            )
        return f"{self.base_url} failed a probe request: {exc}"

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        return await self._sample(request, token_prompt=self.token_prompts)

    async def _sample(self, request: SampleRequest, *, token_prompt: bool) -> list[Continuation]:
        alternatives = self._alternatives_wanted(request)
        try:
            if self.api == "chat":
                response = await self._chat(request, alternatives)
                return [self._continuation(request, *_from_chat_choice(c)) for c in _choices(response)]
            if request.watch is not None and token_prompt and self.streams is not False:
                streamed = await self._stream_complete(request, alternatives)
                if streamed:
                    self.streams = True
                    return [self._continuation(request, *_from_completion_choice(c)) for c in streamed]
                self.streams = False  # the server answered with no event stream: whole responses from now on
            response = await self._complete(request, alternatives, token_prompt)
            return [self._continuation(request, *_from_completion_choice(c)) for c in _choices(response)]
        except BackendError:
            raise
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # A 200 whose body is cut short or is not the JSON we expect.
            raise BackendError(f"malformed response ({type(exc).__name__})", transient=True) from None

    def _alternatives_wanted(self, request: SampleRequest) -> int:
        """How many alternatives to ask for: enough to estimate the log-probability the server does not give."""
        if request.top_logprobs:
            return max(request.top_logprobs, LOGPROB_ALTERNATIVES if request.entropies else 0)
        estimating = request.entropies or (request.temperature not in (0.0, 1.0)
                                           and (request.proposal_logprobs or self.processed))
        return LOGPROB_ALTERNATIVES if estimating and self.alternatives else 0

    async def _complete(self, request: SampleRequest, alternatives: int, token_prompt: bool) -> Any:
        return await self.client.post("/completions", self._completion_body(request, alternatives, token_prompt))

    def _completion_body(self, request: SampleRequest, alternatives: int, token_prompt: bool) -> dict[str, Any]:
        body = self._common(request)
        if token_prompt:
            body |= {"prompt": list(request.prompt_ids), "return_tokens_as_token_ids": True}
        else:
            body["prompt"] = self._prompt_text(request)
        body["logprobs"] = max(1, alternatives)
        return body

    async def _stream_complete(self, request: SampleRequest, alternatives: int) -> list[dict]:
        """The choices of a streamed completion, assembled into the shape of a whole response, so a streamed
        result is the same to the bit. As tokens arrive they are appended to lists handed to `request.watch`.
        Empty when the server sent no event stream."""
        body = self._completion_body(request, alternatives, token_prompt=True) | {"stream": True}
        choices: dict[int, dict] = {}
        live: dict[int, tuple[list[int], list[float]]] = {}
        async for chunk in self.client.events("/completions", body):
            for part in chunk.get("choices") or ():
                index = int(part["index"])
                if index not in choices:
                    choices[index] = {"index": index, "text": "", "finish_reason": None,
                                      "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": []}}
                    live[index] = ([], [])
                    request.watch(index, *live[index])
                choice, (ids, values) = choices[index], live[index]
                choice["text"] += part.get("text") or ""
                choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
                logprobs = part.get("logprobs") or {}
                for position, (token, value) in enumerate(zip(logprobs.get("tokens") or (),
                                                              logprobs.get("token_logprobs") or (), strict=True)):
                    choice["logprobs"]["tokens"].append(token)
                    choice["logprobs"]["token_logprobs"].append(value)
                    top = logprobs.get("top_logprobs")
                    choice["logprobs"]["top_logprobs"].append(top[position] if top else None)
                    values.append(float(value))
                    ids.append(_token_id(token))  # last: a watcher that sees the token sees its logprob too
        for choice in choices.values():
            if not any(choice["logprobs"]["top_logprobs"]):
                choice["logprobs"]["top_logprobs"] = None
        return [choices[index] for index in sorted(choices)]

    async def _chat(self, request: SampleRequest, alternatives: int) -> Any:
        body = self._common(request)
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        partial = self.detokenize(request.prompt_ids[request.prompt_len:])
        if partial:  # servers that can (vLLM) continue the answer so far instead of starting a new turn
            body["messages"].append({"role": "assistant", "content": partial})
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        # llama.cpp's server returns no logprobs without top_logprobs
        body |= {"logprobs": True, "top_logprobs": max(1, alternatives)}
        return await self.client.post("/chat/completions", body)

    def _common(self, request: SampleRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "n": request.n, "max_tokens": request.max_tokens,
            "temperature": request.temperature, "top_p": 1.0, "seed": request.seed,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    def _prompt_text(self, request: SampleRequest) -> str:
        """The exact text of a token prefix: the rendered chat prompt, then the answer so far."""
        tokenizer = self._tokenizer()
        if not request.messages:  # a raw completion prompt: its ids are all the text there is
            return tokenizer.decode(request.prompt_ids)
        return tokenizer.chat_prompt(request.messages) + tokenizer.decode(request.prompt_ids[request.prompt_len:])

    def _continuation(self, request: SampleRequest, ids: list[int] | None, pieces: list[str], text: str,
                      values: list[float], top: Alternatives, finish: str | None) -> Continuation:
        """Log p and log q of each token from what the server said, estimated where it said only one of them.

        Log q is worked out only when the request asks for it: from raw logprobs it needs the top alternatives.
        Servers that answer with token strings are mapped back to our ids one for one when each string is one
        token of ours (the end-of-sequence token shows as an empty string); otherwise the text is re-tokenised
        and the total log-probability, which stays exact, is spread evenly (marked estimated)."""
        temperature = request.temperature
        alternatives = top.values
        logp: list[float] | None = values
        logq: list[float] | None = None
        if temperature == 0:
            logq = [0.0] * len(values)
        elif temperature == 1:
            logq = values
        elif self.processed:
            logq = values
            logp = [estimated_log_p(v, a, temperature) for v, a in zip(values, alternatives, strict=True)] \
                if alternatives else None
        elif alternatives and request.proposal_logprobs:
            logq = [estimated_log_q(v, a, temperature) for v, a in zip(values, alternatives, strict=True)]
        estimated = False
        aligned = True  # the server's positions are our tokens: its alternatives describe them
        if ids is None:
            ids = self._ids_of_pieces(pieces, text, finish)
            if ids is None or len(ids) != len(values):
                ids, estimated, aligned = self.tokenize(text), True, False
                logp = _fit(logp, len(ids)) if logp else logp
                logq = _fit(logq, len(ids)) if logq else logq
            elif finish == "stop" and (not ids or ids[-1] != self._tokenizer().eos_id):
                estimated = True  # ended without scoring its end-of-sequence token, as llama.cpp's server does
        if logp is None:
            raise BackendError(f"{self.base_url} gave no raw log-probabilities at temperature {temperature:g}",
                               transient=False)
        # An answer that is its end token alone, from a server that does not score it, has no logprobs at all:
        # an empty log q, not a missing one.
        entropies = None
        if request.entropies and aligned and alternatives and len(alternatives) == len(ids):
            scale = temperature if self.processed and temperature not in (0.0, 1.0) else 1.0
            entropies = tuple(estimated_entropy(position, scale) for position in alternatives)
        return Continuation(tuple(ids), text, tuple(logp), finish or "length",
                            tuple(logq) if logq is not None else None,
                            top.pairs(self._alternative_id) if request.top_logprobs and top.values else None,
                            logprobs_estimated=estimated, entropies=entropies, entropies_estimated=True)

    def _ids_of_pieces(self, pieces: list[str], text: str, finish: str | None) -> list[int] | None:
        """Our token id for each token string of the server, when each is exactly one token of ours and they
        make up the text. The last string of an answer that stopped may be the end-of-sequence token, which the
        text never shows: servers name it "", by its special string (<|im_end|>) or by its id."""
        tokenizer = self._tokenizer()
        ends = finish == "stop" and bool(pieces) and self._names_the_end(pieces[-1])
        body = pieces[:-1] if ends else pieces
        ids: list[int] = []
        for piece in body:
            piece_ids = tokenizer.encode(piece) if piece else []
            if len(piece_ids) != 1:
                return None
            ids.append(piece_ids[0])
        if "".join(body) != text:
            return None
        return [*ids, tokenizer.eos_id] if ends else ids

    def _alternative_id(self, key: str) -> int:
        """Our id of a top alternative the server names: its id, the end token by any of its names, or a string
        that is exactly one token of ours; -1 when it is none of these."""
        if key.startswith(TOKEN_ID_PREFIX):
            return _token_id(key)
        if self._names_the_end(key):
            return self._tokenizer().eos_id
        ids = self._tokenizer().encode(key) if key else []
        return ids[0] if len(ids) == 1 else -1

    def _names_the_end(self, piece: str) -> bool:
        tokenizer = self._tokenizer()
        if tokenizer.eos_id is None:
            return False
        return piece in ("", tokenizer.eos_text, f"{TOKEN_ID_PREFIX}{tokenizer.eos_id}")

    async def aclose(self) -> None:
        await self.client.aclose()


def _max_model_len(listing: Any, model: str) -> int | None:
    """The model's max_model_len in a /v1/models answer (vLLM's field), if the server gives one."""
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("id") == model and isinstance(entry.get("max_model_len"), int):
            return entry["max_model_len"]
    return None


def _choices(body: Any) -> list[dict]:
    """The choices of a decoded response."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise ValueError("response has no list of choices")
    return choices


class Alternatives:
    """The top alternatives at each position: their log-probabilities, and their tokens only when someone asks
    (an answer of 8 choices x 32 tokens x 20 alternatives had 5,120 names to parse, a third of a search's client
    time on the GPU-like benchmark, when estimating log q needs only the numbers)."""

    def __init__(self, values: list[list[float]], keys: list[list[str]] | None = None):
        self.values = values  # empty: the server gave none (or not at every position)
        self.keys = keys

    def pairs(self, token_id: Callable[[str], int] | None = None) -> tuple[tuple[tuple[int, float], ...], ...]:
        """(id, log p) at each position; ids read by `token_id` from the names (default: token-id names only)."""
        token_id = token_id or _token_id
        keys = self.keys or [[""] * len(position) for position in self.values]
        return tuple(tuple((token_id(key), value) for key, value in zip(names, position, strict=True))
                     for names, position in zip(keys, self.values, strict=True))


def _from_completion_choice(choice: dict):
    """(ids or None, token strings, text, log-probabilities, top alternatives, finish reason) of a
    /v1/completions choice."""
    logprobs = choice.get("logprobs") or {}
    values = [float(v) for v in logprobs.get("token_logprobs") or []]
    tokens = [str(t) for t in logprobs.get("tokens") or []]
    ids = None
    if tokens and all(t.startswith(TOKEN_ID_PREFIX) for t in tokens):
        ids = [int(t[len(TOKEN_ID_PREFIX):]) for t in tokens]
    entries = [entry or {} for entry in logprobs.get("top_logprobs") or []]
    complete = len(entries) == len(values) and all(entries)
    top = Alternatives([[float(v) for v in entry.values()] for entry in entries], [list(entry) for entry in entries]) \
        if complete else Alternatives([])
    return ids, tokens, choice.get("text") or "", values, top, choice.get("finish_reason")


def _from_chat_choice(choice: dict):
    """The same, from a /v1/chat/completions choice; chat answers carry text, so ids are ours to make."""
    content = (choice.get("logprobs") or {}).get("content") or []
    values = [float(item["logprob"]) for item in content]
    tokens = [str(item.get("token", "")) for item in content]
    alternatives = [item.get("top_logprobs") or [] for item in content]
    complete = all(alternatives)
    top = Alternatives([[float(alt["logprob"]) for alt in position] for position in alternatives],
                       [[str(alt.get("token", "")) for alt in position] for position in alternatives]) \
        if complete else Alternatives([])
    return None, tokens, (choice.get("message") or {}).get("content") or "", values, top, choice.get("finish_reason")


def _token_id(key: str) -> int:
    return int(key[len(TOKEN_ID_PREFIX):]) if key.startswith(TOKEN_ID_PREFIX) else -1


def _first_alternatives(continuation: Continuation) -> list[float]:
    """The top log-probabilities at the first position, best first; empty when the server gave none."""
    if not continuation.top_logprobs:
        return []
    return sorted((lp for _, lp in continuation.top_logprobs[0]), reverse=True)


async def _constant(value):
    return value


def _fit(values: list[float], count: int) -> list[float]:
    """Spread a server's per-token logprobs over our re-tokenisation of its text, keeping their sum.

    Only needed when a server answers with token strings instead of ids: the total log-probability of the
    text is exact, while the split between tokens is an even share. Text with no tokens of ours (an
    end-of-sequence token alone) keeps none.
    """
    if count == len(values) or count == 0:
        return values if count else []
    total = sum(values)
    return [total / count] * count
