"""The dashboard's sequential-against-parallel pairs: the same settings and seed, timed in each mode."""

from __future__ import annotations

from dataclasses import dataclass

from engine.scoring import speedup


@dataclass
class ModeTimes:
    """Measured wall seconds of one set of settings and one seed, in each mode: the only speedup worth quoting."""

    label: str  # the spec and its block/max tokens
    seed: int | None = None
    prompt: int = 1  # which of the prompts run so far (1 the first), so two prompts' rows are told apart
    sequential: float | None = None
    parallel: float | None = None

    @property
    def speedup(self) -> float | None:
        return speedup(self.sequential, self.parallel)


