"""The sequences of one llama.cpp context: which are free, and which idle ones still hold a prefix worth keeping."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Collection, Sequence


class SequencePool:
    """Free sequences, and idle ones whose KV cache holds a prefix a later request may extend (least recently
    parked first out)."""

    def __init__(self, llama_cpp, memory, size: int):
        self.llama = llama_cpp
        self.memory = memory
        # A min-heap: new streams take the lowest free sequences, so the running ones stay one contiguous range.
        self.free = list(range(size))
        self.cached: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # idle sequence -> tokens in its KV

    def available(self) -> int:
        return len(self.free) + len(self.cached)

    def take(self, count: int) -> list[int]:
        """The lowest free sequences, evicting the oldest idle prefixes to make room."""
        while len(self.free) < count:
            self.evict_oldest()
        return [heapq.heappop(self.free) for _ in range(count)]

    def release(self, seq: int) -> None:
        if seq >= 0:
            self.llama.llama_memory_seq_rm(self.memory, seq, -1, -1)
            heapq.heappush(self.free, seq)

    def copy(self, source: int, target: int) -> None:
        """Make `target` hold what `source` holds. Across KV streams llama.cpp copies whole streams only (~5 ms
        for 2,048 cells of SmolLM2 here), at the start of the next decode."""
        self.llama.llama_memory_seq_rm(self.memory, target, -1, -1)
        self.llama.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def move(self, source: int, target: int) -> None:
        """Move a running sequence into the free `target`, freeing `source`."""
        self._take_free(target)
        self.copy(source, target)
        self.release(source)

    def vacate(self, seq: int, keep_free: Collection[int]) -> None:
        """Free `seq`: an idle prefix it holds moves to a free sequence outside `keep_free`, or is dropped if there
        is none."""
        if seq not in self.cached:
            return
        spare = [free for free in self.free if free not in keep_free]
        if spare:
            target = min(spare)
            self._take_free(target)
            self.copy(seq, target)
            self.cached = OrderedDict((target if held == seq else held, tokens)
                                      for held, tokens in self.cached.items())
        else:
            del self.cached[seq]
        self.release(seq)

    def _take_free(self, seq: int) -> None:
        self.free.remove(seq)
        heapq.heapify(self.free)

    def evict_oldest(self) -> None:
        seq, _ = self.cached.popitem(last=False)
        self.release(seq)

    def evict_all(self) -> bool:
        """Drop every idle prefix; whether there was one."""
        had = bool(self.cached)
        while self.cached:
            self.evict_oldest()
        return had

    def park(self, seq: int, tokens: tuple[int, ...], *, evict_first: bool = False) -> None:
        """Keep an idle sequence's KV cache for a later request to extend; `evict_first` for a prefix least
        sure to be used."""
        self.cached[seq] = tokens
        self.cached.move_to_end(seq, last=not evict_first)

    def claim(self, prompt: Sequence[int]) -> tuple[int, int]:
        """(sequence, length): the idle sequence holding the longest prefix of `prompt`, trimmed to it, or
        (-1, 0). At least the prompt's last token is left out: its logits are what is sampled from."""
        best_seq, best_len = -1, 0
        for seq, tokens in self.cached.items():
            common = common_prefix(tokens, prompt)
            if common > best_len:
                best_seq, best_len = seq, common
        best_len = min(best_len, len(prompt) - 1)
        if best_seq < 0 or best_len == 0:
            return -1, 0
        del self.cached[best_seq]
        self.llama.llama_memory_seq_rm(self.memory, best_seq, best_len, -1)
        return best_seq, best_len


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def gap_closing_moves(running: Collection[int], blocked: Collection[int], idle: Collection[int], size: int
                      ) -> list[tuple[int, int]]:
    """(from, to) moves that put the running sequences on one contiguous range: the fewest moves, then the fewest
    idle prefixes displaced. None if they already are, or if every such range holds a sequence `blocked` by a job
    not yet decoding."""
    running, blocked, idle = set(running), set(blocked), set(idle)
    best = None
    for start in range(size - len(running) + 1):
        window = set(range(start, start + len(running)))
        if window & blocked:
            continue
        cost = (len(window - running), len(window & idle))
        if best is None or cost < best[0]:
            best = (cost, sorted(running - window), sorted(window - running))
    return list(zip(best[1], best[2], strict=True)) if best else []
