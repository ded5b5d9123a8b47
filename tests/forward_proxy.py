"""A forward HTTP proxy on 127.0.0.1, for tests that point HTTP_PROXY at it: it passes every request on to the
URL it names, answers included as they stream, and notes each one it carried."""

from __future__ import annotations

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"host", "proxy-connection", "proxy-authorization", "connection", "keep-alive", "transfer-encoding",
              "content-length"}


class ForwardProxy:
    """`async with ForwardProxy() as proxy:` listens on a free port; `proxy.carried` lists (method, URL)."""

    def __init__(self) -> None:
        self.carried: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> ForwardProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._carry)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._session.close()
        await self._runner.cleanup()

    async def _carry(self, request: web.Request) -> web.StreamResponse:
        self.carried.append((request.method, str(request.url)))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(request.method, str(request.url), headers=headers,
                                         data=await request.read(), allow_redirects=False) as upstream:
            answer = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await answer.prepare(request)
            async for chunk in upstream.content.iter_any():
                await answer.write(chunk)
            await answer.write_eof()
            return answer
