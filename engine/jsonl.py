"""Resumable JSONL output: one flushed line per result, and a rerun that knows what is already there."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TextIO

from engine.errors import ConfigError


class JsonlAppender:
    """Appends one JSON object per line and flushes it at once, so a kill loses no finished line. The file is
    opened by the first line: a run with no failures leaves no empty errors file behind."""

    def __init__(self, path: Path):
        self.path = path
        self.handle: TextIO | None = None

    def write(self, record: dict) -> None:
        if self.handle is None:
            self.handle = self.path.open("a", encoding="utf-8")
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def repair_and_load(out: Path, key: Callable[[dict], Hashable]) -> set:
    """The keys of the records already in the output. A torn last line, left by a kill, is cut off first."""
    if not out.exists():
        return set()
    with out.open("rb+") as handle:
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            handle.truncate(keep)
    done = set()
    for line in data[:keep].splitlines():
        try:
            record = json.loads(line)
            done.add(key(record))
        except (ValueError, KeyError, TypeError):
            continue  # not ours, or damaged: that question is simply done again
    return done


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output that cannot be written; a file made to find out is removed again. A
    missing directory is refused too, not made: it is more often a typo than a wish."""
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: no directory {path.parent}")
    try:
        existed = path.exists()
        with path.open("a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
