"""The web server behind `beamtui serve`: textual-serve's, with an access token, a cap on dashboards, and a
dashboard process that always ends with its browser tab.

textual-serve starts one dashboard process per websocket and, when the socket closes, asks it to quit and waits
for its output to end. A tab that dropped while the dashboard was starting (a headless browser's screenshot)
could stop that wait early: once a write to the closed socket failed, nobody read the dashboard's output, its
pipe filled, and the dashboard blocked writing a frame while its engine thread went on decoding (seen at
93-171% CPU, still running after `serve` itself had ended). Here a tab's dashboard runs in a process group of
its own, its output is drained until it exits, and it is asked to quit, then sent SIGTERM, then SIGKILL, each
after a grace period; `serve` ends every dashboard left when it ends, and a dashboard dies with `serve` even if
`serve` is killed outright (tui.app.die_with_parent).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shlex
import signal

from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

TOKEN_COOKIE = "beamtui_token"
QUIT_GRACE_S = 2.0  # a dashboard asked to quit closes its engine and exits in ~0.5 s on 2 cores
TERM_GRACE_S = 1.0
HEARTBEAT_S = 15.0  # a browser that vanishes without closing its socket is noticed within this


class TabProcess(AppService):
    """One tab's dashboard, in its own process group, its output read until it exits, ended for certain."""

    def __init__(self, argv: list[str], **kwargs):
        super().__init__(shlex.join(argv), **kwargs)
        self.argv = argv
        self.socket_open = True

    async def _open_app_process(self, width: int = 80, height: int = 24):
        # exec, not a shell: the process whose group we signal is the dashboard itself
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._build_environment(width, height), start_new_session=True)
        self._stdin = self._process.stdin
        return self._process

    async def on_data(self, payload: bytes) -> None:
        """To the browser while its socket is open; afterwards read and dropped, so the dashboard never blocks."""
        if self.socket_open:
            try:
                await self.remote_write_bytes(payload)
            except (ConnectionError, RuntimeError):
                self.socket_open = False

    async def on_meta(self, data: bytes) -> None:
        if self.socket_open:
            try:
                await super().on_meta(data)
            except (ConnectionError, RuntimeError):
                self.socket_open = False

    async def stop(self) -> None:
        """Quit, then SIGTERM, then SIGKILL, each after a grace period; returns once the process has ended."""
        self.socket_open = False
        await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
        process = self._process
        if process is not None and process.returncode is None:
            await self.send_meta({"type": "quit"})
            for grace, sent in ((QUIT_GRACE_S, signal.SIGTERM), (TERM_GRACE_S, signal.SIGKILL)):
                try:
                    await asyncio.wait_for(process.wait(), grace)
                    break
                except TimeoutError:
                    self.signal(sent)
            await process.wait()
        if self._task is not None:
            self._task.cancel()  # its output has ended with it; the reader only has the pipe's tail left
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def signal(self, number: int) -> None:
        """The dashboard and whatever it started (the weight-layout probe, say)."""
        if self._process is not None and self._process.returncode is None:
            try:
                os.killpg(self._process.pid, number)
            except ProcessLookupError:
                pass


class TabServer(Server):
    """textual-serve's server: the token checked on every request, URLs made for the host the browser used, at
    most `max_tabs` dashboards at once, and every dashboard ended with its tab and with the server."""

    def __init__(self, argv: list[str], *, host: str, port: int, token: str | None, max_tabs: int, banner: str):
        super().__init__(shlex.join(argv), host=host, port=port, title="beamtui")
        self.argv = argv
        self.token = token
        self.max_tabs = max_tabs
        self.banner = banner
        self.tabs: dict[TabProcess, web.WebSocketResponse] = {}
        self.opening = 0  # websockets admitted: their dashboards running or starting

    def initialize_logging(self) -> None:
        """No request log: a line per page load would bury the one line that says where to go."""

    async def on_startup(self, app: web.Application) -> None:
        print(self.banner, flush=True)

    async def on_shutdown(self, app: web.Application) -> None:
        """Every dashboard ended, and every socket closed, so no handler keeps the server waiting."""
        tabs = list(self.tabs.items())
        await asyncio.gather(*(tab.stop() for tab, _ in tabs), return_exceptions=True)
        await asyncio.gather(*(socket.close(code=1001) for _, socket in tabs), return_exceptions=True)

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if self.token is not None:
            given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPForbidden(text="beamtui: this dashboard needs its access token (?token=...)")
        self.public_url = f"{request.scheme}://{request.host}"  # as the browser reached us
        if request.path == "/ws":
            if self.opening >= self.max_tabs:
                raise web.HTTPServiceUnavailable(text=f"beamtui: {self.max_tabs} dashboards are open already")
            self.opening += 1
            try:
                return await handler(request)
            finally:
                self.opening -= 1  # after the handler: its dashboard has ended
        response = await handler(request)
        if self.token is not None and request.path == "/":
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        width, height = _size(request.query.get("width"), 80), _size(request.query.get("height"), 24)
        await websocket.prepare(request)
        tab = TabProcess(self.argv, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                         close=websocket.close, download_manager=self.download_manager)
        self.tabs[tab] = websocket
        try:
            await tab.start(width, height)
            await self._relay(websocket, tab)
        except (ValueError, TypeError, KeyError, IndexError, ConnectionError):
            pass  # a malformed message from the page, or a socket gone mid-send: the tab ends below
        finally:
            await asyncio.shield(self._end(tab))
            if not websocket.closed:
                await websocket.close()
        return websocket

    async def _end(self, tab: TabProcess) -> None:
        try:
            await tab.stop()
        finally:
            self.tabs.pop(tab, None)

    @staticmethod
    async def _relay(websocket: web.WebSocketResponse, tab: TabProcess) -> None:
        """The page's keys, resizes, focus and pings to the dashboard, until the socket closes."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            kind, *rest = message.json()
            if kind == "stdin":
                await tab.send_bytes(str(rest[0]).encode("utf-8"))
            elif kind == "resize":
                await tab.set_terminal_size(int(rest[0]["width"]), int(rest[0]["height"]))
            elif kind == "ping":
                await websocket.send_json(["pong", rest[0]])
            elif kind in ("blur", "focus"):
                await (tab.blur() if kind == "blur" else tab.focus())


def _size(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value is not None else default
    except ValueError:
        return default

