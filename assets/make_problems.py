"""Write assets/arithmetic.jsonl: arithmetic in graded difficulty, the shipped problem set for `beamtui eval`.

    python assets/make_problems.py

Five levels of 40 problems each, from one-digit sums to two-digit products, drawn with a fixed seed so the file
is the same on every machine. The embedded 135M model gets most of level 1 right and little of level 5, so
strategies that search harder have room to differ.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261122
PER_LEVEL = 40  # 200 problems: the default eval of four strategies fits in 10 minutes on 2 cores
LEVELS = (
    ("one-digit sums", lambda r: (r.randint(1, 9), "+", r.randint(1, 9))),
    ("two-digit plus one-digit", lambda r: (r.randint(10, 99), "+", r.randint(1, 9))),
    ("two-digit sums", lambda r: (r.randint(10, 99), "+", r.randint(10, 99))),
    ("two-digit differences", lambda r: _ordered(r.randint(10, 99), r.randint(10, 99), "-")),
    ("one- by two-digit products", lambda r: (r.randint(2, 9), "*", r.randint(11, 30))),
)
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
WORDS = {"+": "plus", "-": "minus", "*": "times"}


def _ordered(a: int, b: int, op: str) -> tuple[int, str, int]:
    return (max(a, b), op, min(a, b))


def problems() -> list[dict]:
    rng = random.Random(SEED)
    out = []
    for level, (name, draw) in enumerate(LEVELS, 1):
        for index in range(PER_LEVEL):
            a, op, b = draw(rng)
            out.append({"id": f"L{level}-{index:02d}", "level": level, "kind": name,
                        "question": f"What is {a} {WORDS[op]} {b}?", "answer": str(OPERATIONS[op](a, b))})
    return out


def main() -> None:
    path = Path(__file__).resolve().parent / "arithmetic.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in problems()))
    print(f"wrote {path} ({len(LEVELS) * PER_LEVEL} problems)")


if __name__ == "__main__":
    main()
