"""What is known of the requests a proxy serves, folded from its events: the one place they become state, read by
`beamtui proxy --tui`, `beamtui watch` and the tests. Each request's searches fold into a RunState of their own."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.events import ClientRequestFinished, ClientRequestStarted, Event, SearchStarted
from engine.run_state import RunState
from engine.settings import BackendSettings

KEPT_REQUESTS = 500  # the most recent; a long-running proxy's memory stays flat


@dataclass
class ClientRequest:
    started: ClientRequestStarted
    admitted_at: float
    finished: ClientRequestFinished | None = None
    finished_at: float | None = None
    searches: dict[str, RunState] = field(default_factory=dict)  # by run id, "<request id>/<index>"

    @property
    def state(self) -> str:
        if self.finished is None:
            return "searching"
        return {200: "answered", 499: "client left"}.get(self.finished.status, f"failed {self.finished.status}")

    @property
    def tokens(self) -> int:
        if self.finished is not None:
            return self.finished.completion_tokens
        return sum(search.tokens for search in self.searches.values())

    def elapsed(self, now: float) -> float:
        return (self.finished_at or now) - self.admitted_at

    @property
    def answer_head(self) -> str:
        if self.finished is not None:
            return self.finished.answer_head or (self.finished.error or "")[:80]
        first = next(iter(self.searches.values()), None)
        return first.best_text[-80:] if first else ""

    @property
    def first_search(self) -> RunState | None:
        return next(iter(self.searches.values()), None)


@dataclass
class ProxyState:
    clock: Callable[[], float] = time.monotonic
    requests: OrderedDict[str, ClientRequest] = field(default_factory=OrderedDict)

    def apply(self, event: Event) -> None:
        now = self.clock()
        if isinstance(event, ClientRequestStarted):
            self.requests[event.run_id] = ClientRequest(event, now)
            while len(self.requests) > KEPT_REQUESTS:
                self.requests.popitem(last=False)
            return
        request = self.requests.get(event.run_id.partition("/")[0])
        if request is None:
            return  # from before this view began, or long since dropped
        if isinstance(event, ClientRequestFinished):
            request.finished, request.finished_at = event, now
            return
        search = request.searches.get(event.run_id)
        if search is None:
            if not isinstance(event, SearchStarted):
                return
            backend = BackendSettings(max_concurrent=event.max_concurrent)
            search = request.searches[event.run_id] = RunState(event.run_id, event.settings, backend,
                                                              clock=self.clock)
        search.apply(event)
        search.log.clear()  # the proxy's view keeps no per-search log
