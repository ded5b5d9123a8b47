"""Replay a recorded event log (tests/fixtures) into the dashboard, on a clock that follows the log's own times,
so a snapshot shows a state the app can really be in, with rates that agree with its timings."""

from __future__ import annotations

import dataclasses

from engine import event_log
from engine.events import SearchFinished, SearchStarted
from engine.settings import SearchSettings
from tests.fixtures.record import BACKEND, fixture_path
from tui.app import BeamtuiApp
from tui.engine_host import EngineBatch

FRAME_S = 0.1  # the engine host batches events this often


class ManualClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class ReplayHost:
    """Stands where EngineHost stands and takes the app's orders; the test feeds the events itself."""

    def __init__(self, post):
        self.post = post
        self.orders = []

    def serve(self) -> None:
        pass

    def submit(self, order) -> None:
        self.orders.append(order)

    def shutdown(self) -> None:
        pass


def recorded(strategy: str) -> list[tuple[float, object]]:
    return list(event_log.read(fixture_path(strategy)))


def recorded_settings(strategy: str) -> SearchSettings:
    return next(event for _, event in recorded(strategy) if isinstance(event, SearchStarted)).settings


def replay_app(strategy: str, clock: ManualClock, **kwargs) -> BeamtuiApp:
    return BeamtuiApp(recorded_settings(strategy), BACKEND, clock=clock, host_factory=ReplayHost, **kwargs)


async def replay(pilot, clock: ManualClock, strategy: str, *, until: float | None = None,
                 then: float = 0.0) -> None:
    """Feed the log to the app's current run frame by frame, the clock moving with the recorded times, up to
    `until` seconds into the run (the whole log by default), then let `then` more seconds pass."""
    app = pilot.app
    while app.refresh_timer is None:
        await pilot.pause()
    app.refresh_timer.pause()  # the frames below refresh the panels, each after its events: no race with a timer
    run_id = app.state.run_id
    start = clock.now
    frame: list = []
    frame_end = FRAME_S

    async def flush() -> None:
        clock.now = start + frame_end
        if frame:
            app.post_message(EngineBatch(list(frame)))
            frame.clear()
        await pilot.pause()
        app.refresh_panels()  # once a frame, as the app's 10 Hz timer would, whatever the real time

    for at, event in recorded(strategy):
        if until is not None and at > until:
            break
        while at > frame_end:
            await flush()
            frame_end += FRAME_S
        frame.append(_retagged(event, run_id))
    await flush()
    clock.now += then
    app.refresh_panels()
    await pilot.pause()


def _retagged(event, run_id: str):
    if isinstance(event, SearchFinished):
        event = dataclasses.replace(event, result=dataclasses.replace(event.result, run_id=run_id))
    return dataclasses.replace(event, run_id=run_id)

