"""A sliding window of tasks: eval's searches, a bounded number in hand at once."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine


class TaskWindow:
    """At most `size` tasks at once. A task that raised stops the window: nothing more starts, and `start` and
    `drain` raise what it raised. `close` cancels what still runs (after an error, or when cancelled)."""

    def __init__(self, size: int):
        self._room = asyncio.Semaphore(size)
        self.running: set[asyncio.Task] = set()
        self._failed: list[asyncio.Task] = []

    async def start(self, work: Coroutine) -> None:
        """Start `work` once the window has room."""
        await self._room.acquire()
        if self._failed:
            self._room.release()
            work.close()
            await self._failed[0]  # raises its exception
        task = asyncio.create_task(work)
        self.running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self.running.discard(task)
        self._room.release()
        if not task.cancelled() and task.exception() is not None:
            self._failed.append(task)

    async def drain(self) -> None:
        """Wait for every task started so far; raise the first failure."""
        await asyncio.gather(*self.running, *self._failed)

    async def close(self) -> None:
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
