"""JSON over HTTP to OpenAI-compatible servers through the `openai` SDK on its aiohttp transport: one long-lived
client per endpoint, failures in the request layer's terms, and server-sent events.

The SDK's client runs with its own retries off (the request layer retries, once), on
`openai.DefaultAioHttpClient`, the transport its maintainers recommend for high concurrency (openai-python #1596):
httpx's pool bookkeeping grows with connections times requests, and at a cap of 1,024 it cost 5.2 ms of CPU a
request against aiohttp's ~0.5 (benchmarks.client_ceiling). Bodies go out as we build them, with the fields
servers add to the API (vLLM's `return_tokens_as_token_ids`) included, and come back as bytes decoded as plain
JSON, not the SDK's models. Only the openai backend imports this module, so the local dashboard never pays the
SDK's import (0.5-1.1 s); the backend factory overlaps it with loading the tokenizer.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2  # the SDK's own HTTP types (openai 3.x is built on httpx2): its limits, and what its errors carry
import openai
import orjson  # 3-4x json's speed on answers that carry 20 alternatives a token (tinker requires it too)

from engine.errors import BackendError, redact

NO_KEY = "none"  # the SDK wants a key; without one ours, the Authorization header is left out altogether
CONNECT_TIMEOUT_S = 10.0  # a dead host is told within this; reads get the whole attempt's time


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


def loads(data: bytes):
    """JSON through orjson, or through json for what only it reads (Infinity, NaN: some servers write a
    log-probability of minus infinity so)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def root_cause(exc: BaseException) -> BaseException:
    """The exception at the bottom of a chain of `raise ... from`."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def unanswered(request, exc: Exception) -> openai.APIConnectionError:
    """The SDK's error for a request that got no answer: a timeout, or a connection that failed."""
    if isinstance(root_cause(exc), TimeoutError):
        return openai.APITimeoutError(request)
    return openai.APIConnectionError(request=request)


def refused(response) -> openai.APIStatusError:
    """The SDK's error for an answer with a status of 400 or more."""
    return openai.APIStatusError(f"Error code: {response.status_code}", response=response, body=None)


def short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Route:
    """One method and path of an endpoint: the SDK's request for it, built once by its client (its headers, our
    key), and how a whole answer to it goes out through the aiohttp session of the SDK's transport for its URL
    (the proxy the SDK took from the environment, if any)."""

    def __init__(self, http, method: str, url: str, headers: dict[str, str]):
        self.request = http.build_request(method, url, headers=headers)
        self.request.headers.pop("content-length", None)  # each body sets its own
        self.url = url
        self.headers = dict(self.request.headers)
        transport = http._transport_for_url(self.request.url)  # the mount httpx2 would pick: a proxy or not
        if transport.client is None:
            transport.client = transport.get_client()  # as the transport does on its first request
        self.session: aiohttp.ClientSession = transport.client
        proxy = transport.proxy
        self.proxy = {} if proxy is None else {
            "proxy": str(proxy.url), "proxy_headers": dict(proxy.headers),
            "proxy_auth": aiohttp.BasicAuth(*proxy.auth) if proxy.auth else None}


class JSONClient:
    """JSON to one server through the SDK's client on aiohttp, at most `max_concurrent` connections at once; the
    request layer bounds each attempt, so the SDK's own timeout is per connect and per read.

    The SDK builds the client (its aiohttp transport, connection limit, keep-alive, TLS, proxies from the
    environment) and each route's headers, once. A whole answer then goes out through that transport's own
    aiohttp session, as the transport sends it, but without wrapping each request and answer in httpx2 objects:
    building the SDK's request and response objects, their headers and the answer's byte stream was half of
    the client's own CPU a request (0.20 -> 0.10 ms, benchmarks.client_ceiling --client-alone). Failures
    become the SDK's own errors (`APIStatusError`, `APIConnectionError`, `APITimeoutError`), made from the
    route's SDK request; server-sent events go through the SDK's client and its `AsyncStream`.
    """

    def __init__(self, base_url: str, api_key: str | None, max_concurrent: int, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self._sdk = None
        self._http = None
        self._headers: dict[str, str] = {}
        self._routes: dict[tuple[str, str], Route] = {}
        self._read_timeout = aiohttp.ClientTimeout(sock_connect=min(timeout, CONNECT_TIMEOUT_S), sock_read=timeout)

    def _open(self):
        """The SDK's client on aiohttp, made on first use: a connection a request in flight, kept alive."""
        if self._sdk is None:
            # A plain-HTTP endpoint needs no certificates: loading the system's took ~0.1 s of start-up.
            tls = {} if self.base_url.startswith("https:") else {"verify": False}
            self._http = openai.DefaultAioHttpClient(
                limits=httpx2.Limits(max_connections=self.max_concurrent,
                                     max_keepalive_connections=self.max_concurrent),
                timeout=openai.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_S), pool=None),
                **tls)
            self._sdk = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or NO_KEY, max_retries=0,
                                           http_client=self._http)
            # The SDK's own headers (user agent, platform), and Authorization only with a key of ours: never the
            # SDK's placeholder, never a key it would find in the environment for another endpoint.
            self._headers = {k: v for k, v in self._sdk.default_headers.items() if isinstance(v, str)}
            if self.api_key:
                self._headers["Authorization"] = f"Bearer {self.api_key}"
        return self._http

    def _route(self, method: str, path: str) -> Route:
        route = self._routes.get((method, path))
        if route is None:
            route = self._routes[(method, path)] = Route(self._open(), method, self.base_url + path, self._headers)
        return route

    async def _fetch(self, method: str, path: str, body: dict[str, Any] | None = None,
                     timeout: aiohttp.ClientTimeout | None = None) -> bytes:
        """A whole answer's bytes: the SDK's error for a status of 400 or more or a broken connection."""
        route = self._route(method, path)
        try:
            async with route.session.request(
                    method, route.url, data=None if body is None else orjson.dumps(body), headers=route.headers,
                    timeout=timeout or self._read_timeout, allow_redirects=False,
                    **route.proxy) as answer:
                content = await answer.read()
        except Exception as exc:
            raise unanswered(route.request, exc) from exc
        if answer.status >= 400:
            raise refused(httpx2.Response(answer.status, headers=answer.raw_headers, content=content,
                                          request=route.request))
        return content

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer. Raises BackendError for HTTP errors and broken connections, ValueError for
        a body that is not JSON."""
        try:
            return loads(await self._fetch("POST", path, body))
        except openai.APIError as exc:
            raise self._failure(exc) from None

    async def get(self, path: str, timeout: float) -> Any:
        """The decoded JSON of a GET, within `timeout` seconds; raises as `post` does."""
        limit = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        try:
            return loads(await self._fetch("GET", path, timeout=limit))
        except openai.APIError as exc:
            raise self._failure(exc) from None

    async def events(self, path: str, body: dict[str, Any] | None, method: str = "POST") -> AsyncIterator[dict]:
        """The JSON events of a server-sent event stream, up to `[DONE]`; none at all when the server answered
        with a whole body instead of a stream."""
        route = self._route(method, path)
        request = self._http.build_request(method, route.url, headers=route.headers,
                                           content=None if body is None else orjson.dumps(body))
        try:
            try:
                response = await self._http.send(request, stream=True)
            except Exception as exc:
                raise unanswered(request, exc) from exc
            if response.status_code >= 400:
                await response.aread()
                raise refused(response)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()  # a whole body: the caller asks again without streaming
                return
            async with openai.AsyncStream(cast_to=object, response=response, client=self._sdk) as stream:
                async for event in stream:
                    if isinstance(event, dict):
                        yield event
        except openai.APIError as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: openai.APIError) -> BackendError:
        """The SDK's exceptions in the request layer's terms."""
        if isinstance(exc, openai.APIStatusError):
            return status_error(exc.status_code, exc.response.content, exc.response.headers, self.api_key)
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError too
            root = root_cause(exc)
            # The SDK's aiohttp transport reports every aiohttp connection error of a stream as a connect
            # timeout (its exception map tells ClientConnectionError first), so a refused port or a dropped
            # connection is told apart from a real timeout by what aiohttp itself raised.
            if isinstance(root, TimeoutError):
                return BackendError("request timed out", transient=True)
            reason = short(redact(str(root), self.api_key), 120)
            return BackendError(f"connection failed ({type(root).__name__}: {reason})", transient=True)
        return BackendError(f"stream failed: {short(redact(str(exc), self.api_key))}", transient=True)

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()
