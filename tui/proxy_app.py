"""`beamtui proxy --tui` and `beamtui watch`: the requests a proxy serves, and the selected one's search in the
dashboard's own panels (population, tree, progress).

The proxy's dashboard runs the server on a thread of its own with its own event loop; the watcher reads the
same events from a proxy elsewhere, through its event stream (GET /beamtui/v1/events). Either way events reach
the app as batches ten times a second and fold into one ProxyState.
"""

from __future__ import annotations

import asyncio
import threading
import time

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.message import Message
from textual.widgets import Header

from engine import event_log
from engine.errors import BeamtuiError
from engine.proxy.service import ProxyService
from engine.proxy.state import ProxyState
from tui.engine_host import EngineBatch, EventPump
from tui.panels.keys_bar import KeysBar
from tui.panels.line import Line
from tui.panels.log import LogPanel
from tui.panels.population import PopulationPanel
from tui.panels.progress import ProgressPanel
from tui.panels.requests import RequestsPanel
from tui.panels.tree import TreePanel

REFRESH_HZ = 10


class LogLine(Message):
    def __init__(self, line: str):
        super().__init__()
        self.line = line


class HostStopped(Message):
    """The server could not start, or the stream being watched ended."""

    def __init__(self, error: str | None):
        super().__init__()
        self.error = error


class ProxyHost:
    """The proxy's server on its own thread and loop; its events and log lines posted to the app."""

    def __init__(self, service: ProxyService, host: str, port: int, token: str | None):
        self.service, self.host, self.port, self.token = service, host, port, token
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

    def run(self, post) -> None:
        from tui.commands.proxy_http import serve

        pump = EventPump(post)
        self.service.sinks.append(pump.append)

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            flusher = asyncio.create_task(pump.run_forever())
            try:
                await serve(self.service, self.host, self.port, self.token, "", log=lambda line: post(LogLine(line)),
                            ready=lambda: post(LogLine(f"listening on http://{self.host}:{self.port}/v1")),
                            stop=self._stop)
                post(HostStopped(None))
            except BeamtuiError as exc:
                post(HostStopped(str(exc)))
            finally:
                flusher.cancel()
                pump.flush()

        asyncio.run(main())

    def shutdown(self) -> None:
        self._started.wait(timeout=5)
        if self.loop is not None and self._stop is not None:
            try:
                self.loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has closed already
                pass


class WatchHost:
    """A proxy's event stream, read with the openai SDK's own server-sent-event decoding."""

    def __init__(self, url: str, api_key: str | None):
        self.url, self.api_key = url, api_key
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def run(self, post) -> None:
        from engine.backends.openai_client import JSONClient

        pump = EventPump(post)

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            client = JSONClient(self.url, self.api_key, 1, timeout=3600)
            flusher = asyncio.create_task(pump.run_forever())
            try:
                post(LogLine(f"watching {self.url}"))
                async for record in client.events("/beamtui/v1/events", None, method="GET"):
                    pump.append(event_log.from_record(record))
                post(HostStopped("the proxy closed its event stream"))
            except BeamtuiError as exc:
                post(HostStopped(f"cannot watch {self.url}: {exc}"))
            except asyncio.CancelledError:
                pass
            finally:
                flusher.cancel()
                pump.flush()
                await client.aclose()

        asyncio.run(main())

    def shutdown(self) -> None:
        if self.loop is not None and self._task is not None:
            try:
                self.loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass


class ProxyApp(App):
    CSS_PATH = "beamtui.tcss"
    TITLE = "beamtui proxy"
    SUB_TITLE = "the searches it serves, live"
    BINDINGS = [Binding("q", "quit", "quit", id="quit", priority=True)]

    def __init__(self, service: ProxyService | None, host: str, port: int, token: str | None, banner: str, *,
                 watch_url: str | None = None, api_key: str | None = None):
        super().__init__()
        self.banner = banner
        self.state = ProxyState()
        self.selected: str | None = None
        self.failure: str | None = None
        self.host = WatchHost(watch_url, api_key) if watch_url else ProxyHost(service, host, port, token)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line(id="settings-bar")
        with Grid(id="proxy-dashboard"):
            yield RequestsPanel(id="requests")
            yield PopulationPanel(id="population")
            yield TreePanel(id="tree")
            yield ProgressPanel(id="progress")
            yield LogPanel(time.monotonic, id="log")
        yield KeysBar(id="keys-bar")

    def on_mount(self) -> None:
        self.query_one("#settings-bar", Line).text = self.banner
        self.run_worker(lambda: self.host.run(self.post_message), thread=True, group="proxy", name="proxy server",
                        exclusive=True)
        self.set_interval(1 / REFRESH_HZ, self.refresh_panels)

    def on_engine_batch(self, message: EngineBatch) -> None:
        for event in message.events:
            self.state.apply(event)

    def on_log_line(self, message: LogLine) -> None:
        self.query_one(LogPanel).note(time.monotonic(), message.line)

    def on_host_stopped(self, message: HostStopped) -> None:
        if message.error:
            self.failure = message.error
            self.exit()

    def on_requests_panel_selected(self, message: RequestsPanel.Selected) -> None:
        self.selected = message.request_id

    def refresh_panels(self) -> None:
        self.query_one(RequestsPanel).show(self.state, time.monotonic())
        request = self.state.requests.get(self.selected) if self.selected else None
        if request is None and self.state.requests:
            request = next(reversed(self.state.requests.values()))
        search = request.first_search if request else None
        if search is not None:
            for panel in (self.query_one(PopulationPanel), self.query_one(TreePanel), self.query_one(ProgressPanel)):
                panel.show(search)

    async def action_quit(self) -> None:
        self.host.shutdown()
        self.exit()

    def on_unmount(self) -> None:
        self.host.shutdown()


class WatchApp(ProxyApp):
    TITLE = "beamtui watch"

    def __init__(self, url: str, api_key: str | None):
        super().__init__(None, "", 0, None, f"watching {url} · q quits", watch_url=url, api_key=api_key)
