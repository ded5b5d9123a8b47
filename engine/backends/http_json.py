"""JSON over HTTP for OpenAI-compatible servers: one pooled aiohttp session, failures in the request layer's terms,
and server-sent events.

Straight on aiohttp rather than through the openai SDK: beamtui used only the SDK's `post` (its models cost ~2 ms
a response, its param transform ~3 ms a request), and importing it took 1.4 s of a 2.1 s start-up on a 2-core
EPYC (`python -X importtime`); aiohttp imports in 0.3 s.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from engine.errors import BackendError, redact

STREAM_LINE_BYTES = 1 << 20  # one event with 20 alternatives a token is a few KiB; aiohttp's 64 KiB default is tight


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


def env_proxy(url: str) -> str | None:
    """The HTTP(S)_PROXY that serves `url`, unless NO_PROXY exempts its host. Looked up once: aiohttp's
    `trust_env` looks it up (and reads ~/.netrc) on a thread for every request, two thread hops each."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


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


def transport_error(exc: BaseException) -> BackendError:
    if isinstance(exc, TimeoutError):
        return BackendError("request timed out", transient=True)
    cause = getattr(exc, "os_error", None)  # aiohttp's connector errors wrap the socket's own, which says it best
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else short(str(exc), 120)
    return BackendError(f"connection failed ({type(exc).__name__}: {reason})", transient=True)


def short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class JSONClient:
    """POSTs JSON to one server, at most `max_concurrent` connections at once; the request layer bounds each
    attempt, so the session's own timeouts are per connect and per read, like the SDK's were."""

    def __init__(self, base_url: str, api_key: str | None, max_concurrent: int, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.proxy = env_proxy(self.base_url)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The pooled session, made on first use: aiohttp binds it to the running event loop."""
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrent),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
                read_bufsize=STREAM_LINE_BYTES,
            )
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer. Raises BackendError for HTTP errors and broken connections, ValueError for
        a body that is not JSON."""
        try:
            async with self._open().post(self.base_url + path, json=body, proxy=self.proxy) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise status_error(response.status, raw, response.headers, self.api_key)
                return json.loads(raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc) from None

    async def events(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict]:
        """The JSON events of a server-sent event stream, up to `[DONE]`; none at all when the server answered
        with a whole body instead of a stream."""
        try:
            async with self._open().post(self.base_url + path, json=body, proxy=self.proxy) as response:
                if response.status >= 400:
                    raise status_error(response.status, await response.read(), response.headers, self.api_key)
                if response.content_type != "text/event-stream":
                    await response.read()
                    return
                data: list[bytes] = []
                async for line in response.content:
                    line = line.rstrip(b"\r\n")
                    if line.startswith(b"data:"):
                        data.append(line[5:].lstrip(b" "))
                        continue
                    if line or not data:
                        continue  # a comment, another field, or a blank line with no event pending
                    payload, data = b"\n".join(data), []
                    if payload == b"[DONE]":
                        return
                    event = json.loads(payload)
                    if isinstance(event, dict) and event.get("error"):
                        raise BackendError(f"stream failed: {short(redact(str(event['error']), self.api_key))}",
                                           transient=True)
                    yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
