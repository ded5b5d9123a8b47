"""JSON over HTTP to OpenAI-compatible servers through the `openai` SDK: one pooled client per endpoint, failures
in the request layer's terms, and server-sent events.

The SDK does the HTTP (httpx, proxies from the environment, SSE) with its own retries off: the request layer
retries, once. Bodies go out as we build them, with the fields servers add to the API (vLLM's
`return_tokens_as_token_ids`) included, and come back as plain JSON rather than the SDK's models, which cost a
few milliseconds a response. Only the openai backend imports this module, so the local dashboard never pays the
SDK's import (1.1 s on a 2-core EPYC, `python -X importtime`); the backend factory overlaps it with loading the
tokenizer.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai

from engine.errors import BackendError, redact

NO_KEY = "none"  # the SDK wants a key; without one ours, the Authorization header is left out altogether


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


def status_error(status: int, body: bytes, headers: Any, secret: str | None = None) -> BackendError:
    """An HTTP error answer as the request layer sees it: what to retry and how long to wait."""
    return BackendError(
        f"HTTP {status}: {short(redact(error_message(body), secret))}",
        transient=status in (408, 409, 425, 429) or status >= 500,
        retry_after=retry_after_seconds(headers),
        status=status,
    )


def error_message(body: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body as text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return text
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(error) if error else text


def short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class JSONClient:
    """POSTs JSON to one server through the SDK, at most `max_concurrent` connections at once; the request layer
    bounds each attempt, so the SDK's own timeout is per connect and per read."""

    def __init__(self, base_url: str, api_key: str | None, max_concurrent: int, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self._client = None

    def _open(self):
        """The SDK's client, made on first use (its import is the slow part)."""
        if self._client is None:
            limits = httpx.Limits(max_connections=self.max_concurrent, max_keepalive_connections=self.max_concurrent)
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key or NO_KEY, max_retries=0,
                timeout=httpx.Timeout(self.timeout), http_client=openai.DefaultAsyncHttpxClient(limits=limits),
            )
        return self._client

    def _options(self) -> dict:
        # Without a key of ours, no Authorization header at all: never the SDK's placeholder, never a key it
        # would find in the environment for another endpoint.
        return {} if self.api_key else {"headers": {"Authorization": openai.Omit()}}

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer. Raises BackendError for HTTP errors and broken connections, ValueError for
        a body that is not JSON."""
        client = self._open()
        try:
            response = await client.post(path, body=body, cast_to=httpx.Response, options=self._options())
            return json.loads(response.content)
        except Exception as exc:
            raise self._failure(exc) from None

    async def get(self, path: str, timeout: float) -> Any:
        """The decoded JSON of a GET, within `timeout` seconds; raises as `post` does."""
        client = self._open()
        try:
            response = await client.get(path, cast_to=httpx.Response, options=self._options() | {"timeout": timeout})
            return json.loads(response.content)
        except Exception as exc:
            raise self._failure(exc) from None

    async def events(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict]:
        """The JSON events of a server-sent event stream, up to `[DONE]`; none at all when the server answered
        with a whole body instead of a stream."""
        client = self._open()
        try:
            stream = await client.post(path, body=body, cast_to=object, stream=True, stream_cls=openai.AsyncStream[object],
                                       options=self._options())
            async with stream:
                async for event in stream:
                    if isinstance(event, dict):
                        yield event
        except Exception as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: Exception) -> Exception:
        """The SDK's exceptions in the request layer's terms; anything else (a body that is not JSON) as it is."""
        if isinstance(exc, openai.APIStatusError):
            return status_error(exc.status_code, exc.response.content, exc.response.headers, self.api_key)
        if isinstance(exc, openai.APITimeoutError):
            return BackendError("request timed out", transient=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            reason = short(redact(str(cause or exc), self.api_key), 120)
            return BackendError(f"connection failed ({type(cause or exc).__name__}: {reason})", transient=True)
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return BackendError(f"stream failed: {short(redact(str(exc), self.api_key))}", transient=True)
        return exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
