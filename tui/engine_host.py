"""The engine on its own thread and event loop, talking to the app only through messages.

Events are buffered on the engine's loop and posted as one `EngineBatch` message every 100 ms, so a search
with hundreds of requests in flight costs the UI thread ten messages a second, not thousands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from engine.backends.factory import open_sampler
from engine.errors import BeamtuiError
from engine.events import Event
from engine.sampler import Sampler
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings

FLUSH_INTERVAL_S = 0.1


class EngineBatch(Message):
    """Engine events since the last batch, oldest first (they may belong to a run already abandoned)."""

    def __init__(self, events: list[Event]):
        super().__init__()
        self.events = events


class EngineFailed(Message):
    """A run could not start or went wrong outside the search's own error handling."""

    def __init__(self, run_id: str, error: str):
        super().__init__()
        self.run_id = run_id
        self.error = error


@dataclass(frozen=True)
class SearchOrder:
    run_id: str
    search: SearchSettings
    backend: BackendSettings


class EventPump:
    """Events buffered on the engine's loop (`append` is the searches' sink), posted as one batch at a time."""

    def __init__(self, post: Callable[[Message], object]):
        self.post = post
        self.events: list[Event] = []
        self.append = self.events.append

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def flush(self) -> None:
        if self.events:
            events = self.events[:]
            self.events.clear()  # in place: the running searches hold this list's append
            self.post(EngineBatch(events))


def same_backend(old: BackendSettings, new: BackendSettings) -> bool:
    """Whether an open backend can serve new settings; the local model is not reloaded for a new cap."""
    if old.backend == new.backend == "local":
        return ((old.model_path, old.threads, old.weights, old.flash_attn)
                == (new.model_path, new.threads, new.weights, new.flash_attn))
    return old == new


class EngineHost:
    """Runs searches one at a time on a private event loop; a new order cancels the running one."""

    def __init__(self, post: Callable[[Message], object], opener=open_sampler):
        self.post = post
        self.opener = opener
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: list[SearchOrder | None] = []
        self._orders: asyncio.Queue[SearchOrder | None] | None = None
        self._pump = EventPump(post)
        self._sampler: Sampler | None = None
        self._sampler_settings: BackendSettings | None = None

    # Called from the UI thread ---------------------------------------------------------------------------

    def submit(self, order: SearchOrder) -> None:
        self._send(order)

    def shutdown(self) -> None:
        self._send(None)

    def _send(self, item: SearchOrder | None) -> None:
        """Hand an order to the engine loop, or keep it until the loop runs. Never blocks the UI."""
        with self._lock:
            if self._orders is None:
                self._pending.append(item)
                return
        try:
            self.loop.call_soon_threadsafe(self._orders.put_nowait, item)
        except RuntimeError:  # the loop has already closed: nothing left to do
            pass

    # The engine thread -------------------------------------------------------------------------------------

    def serve(self) -> None:
        """The body of the engine's thread: returns once `shutdown()` is called."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        orders: asyncio.Queue[SearchOrder | None] = asyncio.Queue()
        with self._lock:
            for item in self._pending:
                orders.put_nowait(item)
            self._orders = orders
        flusher = asyncio.create_task(self._pump.run_forever())
        current: asyncio.Task | None = None
        try:
            while (order := await self._orders.get()) is not None:
                await _cancel(current)
                current = asyncio.create_task(self._run(order))
        finally:
            await _cancel(current)
            await _cancel(flusher)
            self._pump.flush()
            if self._sampler is not None:
                await self._sampler.aclose()

    async def _run(self, order: SearchOrder) -> None:
        try:
            sampler = await self._sampler_for(order.backend)
            await run_search(order.search, sampler, order.backend, self._pump.append, run_id=order.run_id,
                             watch_growth=True)
        except BeamtuiError as exc:
            self.post(EngineFailed(order.run_id, str(exc)))
        except Exception as exc:  # keep the dashboard alive and say what broke
            self.post(EngineFailed(order.run_id, f"unexpected {type(exc).__name__}: {exc}"))
        finally:
            self._pump.flush()

    async def _sampler_for(self, settings: BackendSettings) -> Sampler:
        if self._sampler is not None and same_backend(self._sampler_settings, settings):
            self._sampler.latency = settings.latency
            return self._sampler
        if self._sampler is not None:
            old, self._sampler = self._sampler, None
            await old.aclose()
        self._sampler = await self.opener(settings)
        self._sampler_settings = dataclasses.replace(settings)
        return self._sampler


async def _cancel(task: asyncio.Task | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
