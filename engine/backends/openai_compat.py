"""Any OpenAI-compatible endpoint (vLLM, llama.cpp's server, xAI, OpenAI) through `/v1/completions`.

Servers differ in ways that matter here, so `start()` probes once and adapts:
- vLLM takes token-id prompts and can answer with token ids; llama-cpp-python's server refuses token-id
  prompts (HTTP 500), so we send it the exact text of the prefix instead;
- some servers ignore `n` and return one choice; the request layer then sends separate requests.
Chat-only endpoints use `/v1/chat/completions` with `logprobs=true` (`api="chat"`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from typing import Any

import httpx2
import openai

from engine.backends.base import Continuation, Message, SampleRequest, Send
from engine.errors import BackendError, ConfigError, redact
from engine.tokenizers import Tokenizer, TokenizerBacked, load_tokenizer

TOKEN_ID_PREFIX = "token_id:"
PROBE_MESSAGES = (Message("user", "Say hi."),)


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds, from either of its two forms."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - time.time()) if moment else None


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return exc


def backend_error(exc: Exception, secret: str | None = None) -> BackendError:
    """Translate an SDK failure into the request layer's terms: what to retry and how long to wait."""
    if isinstance(exc, openai.APIConnectionError):
        # The aiohttp transport reports a refused connection as a connect *timeout*; the root cause tells.
        root = _root_cause(exc)
        if isinstance(root, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in type(root).__name__:
            return BackendError("request timed out", transient=True)
        return BackendError(f"connection failed ({type(root).__name__}: {_short(str(root), 80)})", transient=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        transient = status in (408, 409, 425, 429) or status >= 500
        return BackendError(
            f"HTTP {status}: {_short(redact(exc.message, secret))}",
            transient=transient,
            retry_after=retry_after_seconds(exc.response.headers),
            status=status,
        )
    # A 200 whose body is cut short or is not the JSON we expect.
    return BackendError(f"malformed response ({type(exc).__name__})", transient=True)


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class OpenAISampler(TokenizerBacked):
    name = "openai"

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
    ):
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.api = api
        self.tokenizer_spec = tokenizer or model
        self.tokenizer: Tokenizer | None = None
        self.honours_n = True
        self.token_prompts = True  # send prompts as token ids, until the server refuses them
        limits = httpx2.Limits(max_connections=max_concurrent, max_keepalive_connections=max_concurrent)
        # aiohttp under the SDK's httpx interface: at 100 requests a second httpcore's pool alone costs ~2 ms
        # of CPU per request, enough to hold a 50-wide window at 85% of ideal instead of 92%.
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",  # local servers take any key; the SDK insists on one
            max_retries=0,  # the request layer retries; stacking the SDK's retries would hide them
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(limits=limits, timeout=timeout),
        )

    @property
    def model_name(self) -> str:
        return self.model

    async def start(self, send: Send) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_spec)
        prompt = tuple(self.render_chat(PROBE_MESSAGES))
        probe = SampleRequest(prompt, n=2, max_tokens=2, temperature=1.0, seed=0, messages=PROBE_MESSAGES,
                              prompt_len=len(prompt))
        if self.api == "completions" and await self._refuses_token_prompts(probe):
            self.token_prompts = False
        try:
            continuations = await send(probe)
        except BackendError as exc:
            raise ConfigError(self._probe_failure(exc)) from None
        self.honours_n = len(continuations) >= 2

    async def _refuses_token_prompts(self, probe: SampleRequest) -> bool:
        """True when the server twice rejects a token-id prompt as invalid, yet takes the same prompt as text.

        Asking twice keeps one injected 500 from flipping a server that does take token ids.
        """
        for _ in range(2):
            try:
                await self.sample(probe)
                return False
            except BackendError as exc:
                if exc.status not in (400, 422, 500):
                    return False
        self.token_prompts = False
        try:
            await self.sample(probe)
            return True
        except BackendError:
            return False
        finally:
            self.token_prompts = True

    def _probe_failure(self, exc: BackendError) -> str:
        if exc.status in (401, 403):
            return f"{self.base_url} refused the API key (HTTP {exc.status})"
        if exc.status == 404:
            return f"{self.base_url} has no {self.api} endpoint or no model {self.model!r} ({exc})"
        if exc.status is None and "connection" in str(exc):
            return f"cannot reach {self.base_url}: {exc}"
        if "logprobs" in str(exc):
            return (
                f"{self.base_url} returned no logprobs for model {self.model!r}; beam search needs per-token "
                "logprobs (llama.cpp's server needs --logits_all true)"
            )
        return f"{self.base_url} failed a probe request: {exc}"

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        try:
            if self.api == "chat":
                response = await self._chat(request)
                return [self._from_chat_choice(choice) for choice in _choices(response)]
            response = await self._complete(request)
            return [self._from_completion_choice(choice) for choice in _choices(response)]
        except BackendError:
            raise
        except (openai.OpenAIError, ValueError, TypeError, AttributeError, KeyError) as exc:
            raise backend_error(exc, self.api_key) from None

    async def _complete(self, request: SampleRequest) -> httpx2.Response:
        body = self._common(request)
        if self.token_prompts:
            body |= {"prompt": list(request.prompt_ids), "return_tokens_as_token_ids": True}
        else:
            body["prompt"] = self._prompt_text(request)
        body["logprobs"] = 1
        return await self._post("/completions", body)

    async def _chat(self, request: SampleRequest) -> httpx2.Response:
        body = self._common(request)
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        partial = self.detokenize(request.prompt_ids[request.prompt_len:])
        if partial:  # servers that can (vLLM) continue the answer so far instead of starting a new turn
            body["messages"].append({"role": "assistant", "content": partial})
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        body |= {"logprobs": True, "top_logprobs": 1}  # llama.cpp's server returns no logprobs without top_logprobs
        return await self._post("/chat/completions", body)

    def _common(self, request: SampleRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "n": request.n, "max_tokens": request.max_tokens,
            "temperature": request.temperature, "top_p": 1.0, "seed": request.seed,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> httpx2.Response:
        """POST through the SDK's client (its pool, auth and typed errors) without its per-field param transform,
        which costs ~3 ms per request on a long token-id prompt and shows up as lost parallel efficiency."""
        return await self.client.post(path, body=body, cast_to=httpx2.Response)

    def _prompt_text(self, request: SampleRequest) -> str:
        """The exact text of a token prefix: the rendered chat prompt, then the answer so far."""
        tokenizer = self._tokenizer()
        prompt = tokenizer.chat_prompt(request.messages) if request.messages else ""
        return prompt + tokenizer.decode(request.prompt_ids[request.prompt_len:])

    def _from_completion_choice(self, choice: dict) -> Continuation:
        logprobs = choice.get("logprobs") or {}
        text = choice.get("text") or ""
        values = [float(v) for v in logprobs.get("token_logprobs") or []]
        tokens = logprobs.get("tokens") or []
        if tokens and all(t.startswith(TOKEN_ID_PREFIX) for t in tokens):
            ids = [int(t[len(TOKEN_ID_PREFIX):]) for t in tokens]
        else:
            ids = self.tokenize(text)
            values = _fit(values, len(ids)) if values else []
        return Continuation(tuple(ids), text, tuple(values), _finish(choice.get("finish_reason")))

    def _from_chat_choice(self, choice: dict) -> Continuation:
        text = (choice.get("message") or {}).get("content") or ""
        content = (choice.get("logprobs") or {}).get("content") or []
        values = [float(item["logprob"]) for item in content]
        ids = self.tokenize(text)
        return Continuation(tuple(ids), text, tuple(_fit(values, len(ids)) if values else []),
                            _finish(choice.get("finish_reason")))

    async def aclose(self) -> None:
        await self.client.close()


def _choices(raw) -> list[dict]:
    """The choices of a raw response, parsed with json alone: the SDK's models cost ~2 ms a response."""
    body = json.loads(raw.content)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise ValueError("response has no list of choices")
    return choices


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _fit(values: list[float], count: int) -> list[float]:
    """Spread a server's per-token logprobs over our re-tokenisation of its text, keeping their sum.

    Only needed when a server answers with token strings instead of ids: the total log-probability of the
    text is exact, while the split between tokens is an even share.
    """
    if count == len(values) or count == 0:
        return values
    total = sum(values)
    return [total / count] * count
