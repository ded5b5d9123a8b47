"""An eval on its own thread and event loop, talking to the eval dashboard only through messages.

As in `engine_host`, events are buffered and posted ten times a second, together with the results that landed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.message import Message

from engine.backends.factory import open_sampler
from engine.errors import BeamtuiError
from engine.eval.plan import EvalPlan
from tui.engine_host import FLUSH_INTERVAL_S, EngineFailed, EventPump

EVAL_RUN = "eval"


class EvalResults(Message):
    """Searches finished since the last batch: their output records, and how far the eval is."""

    def __init__(self, records: list[dict], finished: bool = False):
        super().__init__()
        self.records = records
        self.finished = finished


class EvalHost:
    def __init__(self, post: Callable[[Message], object], plan: EvalPlan):
        self.post = post
        self.plan = plan
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self._pump = EventPump(post)
        self._records: list[dict] = []
        self.wall_s: float | None = None  # None until the eval has run to its end
        self._stopped = False

    def serve(self) -> None:
        """The body of the eval's thread: returns when the eval ends or `shutdown()` is called."""
        asyncio.run(self._main())

    def shutdown(self) -> None:
        self._stopped = True  # before the loop runs: it will not start
        if self.loop is not None and self.task is not None:
            try:
                self.loop.call_soon_threadsafe(self.task.cancel)
            except RuntimeError:  # the loop has already closed
                pass

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        if self._stopped:
            return
        flusher = asyncio.create_task(self._flush_forever())
        sampler = None
        try:
            sampler = await open_sampler(self.plan.backend)
            self.wall_s = await self.plan.run(sampler, emit=self._pump.append,
                                              on_result=lambda spec, record, progress: self._records.append(record),
                                              on_timing=self._records.append)  # the table's times per search
            self._flush(finished=True)
        except asyncio.CancelledError:
            pass
        except BeamtuiError as exc:
            self.post(EngineFailed(EVAL_RUN, str(exc)))
        except Exception as exc:  # keep the dashboard alive and say what broke
            self.post(EngineFailed(EVAL_RUN, f"unexpected {type(exc).__name__}: {exc}"))
        finally:
            flusher.cancel()
            if sampler is not None:
                await sampler.aclose()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._flush()

    def _flush(self, finished: bool = False) -> None:
        self._pump.flush()
        if self._records or finished:
            records = self._records[:]
            self._records.clear()
            self.post(EvalResults(records, finished))
