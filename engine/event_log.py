"""Events to JSON and back, one object per line: recorded runs that replay exactly (the TUI's snapshot fixtures
are such logs), readable and diffable."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine import events
from engine.results import RoundTiming, SearchResult
from engine.scoring import Candidate
from engine.settings import SearchSettings

EVENT_TYPES = {cls.__name__: cls for cls in typing.get_args(events.Event)}
_NAMES = {cls.__name__: cls for cls in (*EVENT_TYPES.values(), events.Member, events.LiveCandidate, SearchResult,
                                        SearchSettings, Candidate, RoundTiming)}


def to_record(event: events.Event) -> dict:
    """A JSON-ready dict of the event, its type included."""
    return {"type": type(event).__name__} | _plain(event)


def from_record(record: dict) -> events.Event:
    kind = EVENT_TYPES.get(record.get("type"))
    if kind is None:
        raise ValueError(f"unknown event type {record.get('type')!r}")
    return _build(kind, {k: v for k, v in record.items() if k != "type"})


def write(path: Path, timed_events: Iterable[tuple[float, events.Event]]) -> None:
    """A log of (seconds since the run started, event), one JSON object a line."""
    with path.open("w", encoding="utf-8") as out:
        for at, event in timed_events:
            out.write(json.dumps({"t": round(at, 4)} | to_record(event), ensure_ascii=False) + "\n")


def read(path: Path) -> Iterator[tuple[float, events.Event]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                record = json.loads(line)
                yield record.pop("t"), from_record(record)


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _build(kind: type, data: dict):
    hints = typing.get_type_hints(kind, localns=_NAMES)
    return kind(**{name: _typed(hints[name], value) for name, value in data.items()})


def _typed(hint, value):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if origin in (tuple, list):
        args = typing.get_args(hint)
        item = args[0] if args else typing.Any
        items = [_typed(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value
