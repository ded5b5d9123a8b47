"""Replay a recorded engine event stream into the dashboard, for screenshots that do not depend on timing.

The events come from a real seeded search on the embedded model; only their timing fields are pinned, so that
a snapshot shows the same numbers on every machine.
"""

from __future__ import annotations

import dataclasses

from engine.events import BlockFinished, Event, RequestFinished, SearchFinished
from tui.engine_host import EngineBatch

LATENCY_S = 0.25


def pin_timings(events: list[Event]) -> list[Event]:
    pinned = []
    for event in events:
        if isinstance(event, RequestFinished):
            event = dataclasses.replace(event, latency_s=LATENCY_S)
        elif isinstance(event, BlockFinished):
            event = dataclasses.replace(event, wall_s=LATENCY_S, sum_request_s=LATENCY_S * event.requests)
        elif isinstance(event, SearchFinished):
            result = event.result
            blocks = [dataclasses.replace(b, wall_s=LATENCY_S, sum_request_s=LATENCY_S * b.requests)
                      for b in result.blocks]
            event = dataclasses.replace(event, result=dataclasses.replace(
                result, blocks=blocks, wall_s=LATENCY_S * len(blocks),
                usage=result.usage | {"sum_latency_s": LATENCY_S * result.requests}))
        pinned.append(event)
    return pinned


class ReplayHost:
    """Stands where EngineHost stands; answers each search order with the recorded events, re-tagged."""

    def __init__(self, post, events: list[Event]):
        self.post = post
        self.events = events

    def serve(self) -> None:
        pass

    def submit(self, order) -> None:
        retagged = []
        for event in self.events:
            if isinstance(event, SearchFinished):
                event = dataclasses.replace(event, result=dataclasses.replace(event.result, run_id=order.run_id))
            retagged.append(dataclasses.replace(event, run_id=order.run_id))
        self.post(EngineBatch(retagged))

    def shutdown(self) -> None:
        pass
