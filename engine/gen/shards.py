"""Shards of a question file, for gen jobs on several machines with no coordination between them.

A question belongs to shard `sha256(id) mod N`: every job reads the whole file and keeps its own questions, so
N jobs started with the same flags and shards 0..N-1 together cover every id exactly once, whatever order the
scheduler runs them in. Each writes its own output, named after its shard, and resumes it like any gen run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError

SHARD = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    index: int  # from 0, as Slurm's SLURM_ARRAY_TASK_ID and Kubernetes' JOB_COMPLETION_INDEX count
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = SHARD.fullmatch(text.strip())
        if match is None:
            raise ConfigError(f"--shard takes I/N (shard I of N, I from 0), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise ConfigError(f"--shard {text}: I must be 0 to N-1 and N at least 1")
        return cls(index, count)

    def holds(self, question_id: str) -> bool:
        return shard_of(question_id, self.count) == self.index

    def output(self, out: Path) -> Path:
        """teacher.jsonl → teacher.shard-2-of-4.jsonl: one file per shard, so one command line serves them all."""
        stem = out.name.removesuffix(".jsonl")
        return out.with_name(f"{stem}.shard-{self.index}-of-{self.count}.jsonl")


def shard_of(question_id: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "big") % count
