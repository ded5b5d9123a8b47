"""The run's log in plain words: each entry the fold keeps (engine.run_state.LogEntry) as one line."""

from __future__ import annotations

from engine.events import RequestFinished, RequestRetried, SearchStarted
from engine.results import SearchResult
from engine.run_state import Cancelled, Failed, LogEntry, Note, RoundLogged

WHY = {"finished": "every answer ended", "max_tokens": "max tokens reached"}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def log_line(entry: LogEntry) -> str:
    match entry:
        case SearchStarted():
            return (f"search {entry.run_id} started on {entry.backend}: {entry.settings.strategy}, seed {entry.seed}, "
                    f"{entry.prompt_tokens} prompt tokens, cap {entry.max_concurrent}"
                    + (" (log-probabilities estimated by the backend)" if entry.approximate else ""))
        case RequestRetried():
            return (f"request {entry.request_id} retried after attempt {entry.attempt} ({entry.reason}); waiting "
                    f"{entry.delay_s:.1f}s")
        case RequestFinished():
            return f"request {entry.request_id} failed after {entry.retries} retries: {entry.error}"
        case RoundLogged(timing=row):
            return (f"round {row.round} (block {row.block}/{entry.max_blocks}, {row.stage}): "
                    f"{plural(row.requests, 'request')} in {row.wall_s:.2f}s, latency overlap x{row.overlap:.1f}"
                    + (f", {row.failed} failed" if row.failed else ""))
        case SearchResult():
            answer = entry.answer
            score = f"{answer.score:.4f}" if answer is not None else "–"
            return (f"search finished, {WHY.get(entry.stop_reason, 'done')}, in {entry.wall_s:.2f}s: best score "
                    f"{score}, {plural(entry.requests, 'request')}, {entry.usage.get('retries', 0)} retries")
        case Failed():
            return f"error: {entry.message}"
        case Cancelled():
            return f"search {entry.run_id} cancelled"
        case Note():
            return entry.text
    raise TypeError(f"not a log entry: {entry!r}")
