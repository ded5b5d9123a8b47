"""`beamtui proxy`'s server on its own thread and loop in the test process, so the real openai SDK (sync or
async) can call it over loopback while the test reads the service's state."""

from __future__ import annotations

import asyncio
import threading

from engine.proxy.service import ProxyService
from tests.conftest import free_port


class ThreadedProxy:
    def __init__(self, service: ProxyService, *, token: str | None = None):
        self.service = service
        self.token = token
        self.port = free_port()
        self.lines: list[str] = []  # the proxy's log
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        from tui.commands.proxy_http import serve

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                # The test process's heap is not the proxy's to freeze (settle): a test of its own sees to that.
                await serve(self.service, "127.0.0.1", self.port, self.token, "", log=self.lines.append,
                            ready=self._ready.set, stop=self._stop, settle=False)
            except BaseException as exc:  # start-up failed: the test that waits hears of it
                self.failure = exc
                self._ready.set()

        self.loop.run_until_complete(main())

    def call(self, coroutine, timeout: float = 30):
        """Run a coroutine on the proxy's loop (to read or poke the service where it lives)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> ThreadedProxy:
        self.thread.start()
        if not self._ready.wait(timeout=120):
            raise RuntimeError("the proxy did not start in time")
        if self.failure is not None:
            raise self.failure
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=30)
