"""Problem files for eval: generic, GSM8K, MATH (MATH-500) and multiple choice, as users download them.

The shape is detected from the first record and every record must have it; what was detected is said in one
line. The file is checked whole in one streaming pass before any request, and read again as the eval goes, so
memory does not grow with the number of problems (only their ids are held, to find duplicates and results).
The gold answer is what a grader compares against: GSM8K's `#### 42`, MATH's `answer` field or the last
`\\boxed{...}` of its `solution`, a choice letter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError

QUESTION_KEYS = ("question", "problem", "prompt")
LETTERS = "ABCDEFGHIJ"
GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$")


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str  # the gold answer, in the form the shape's grader reads
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProblemSet:
    """A checked problem file: iterating it reads the problems again, one at a time."""

    path: Path
    shape: str  # generic | gsm8k | math | choice
    ids: frozenset[str]
    first_answer: str  # what `--grader auto` looks at
    limit: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Problem]:
        for problem, _, _ in _parse(self.path, self.limit):
            yield problem

    def describe(self) -> str:
        return f"{self.path.name}: {len(self)} problems, {SHAPE_NAMES[self.shape]}"


SHAPE_NAMES = {
    "generic": "generic (question + answer)",
    "gsm8k": "GSM8K style (answer ends in '#### N')",
    "math": "MATH style (\\boxed{} solution)",
    "choice": "multiple choice (choices + letter)",
}


def last_boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...} (or \\fbox{...}), braces balanced; None when there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    index = text.index("{", start) + 1
    depth, begin = 1, index
    while index < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    return text[begin:index - 1] if depth == 0 else None


def detect_shape(record: dict) -> str:
    if "choices" in record:
        return "choice"
    if "solution" in record and last_boxed(str(record["solution"])) is not None:
        return "math"
    if isinstance(record.get("answer"), str) and GSM8K_ANSWER.search(record["answer"]):
        return "gsm8k"
    return "generic"


def read_problems(path: Path, limit: int | None = None) -> ProblemSet:
    """Check every problem of a .jsonl file (up to `limit`) before any request is sent."""
    shape, first_answer, seen = None, None, set()
    for problem, where, record_shape in _parse(path, limit):
        shape, first_answer = shape or record_shape, first_answer or problem.answer
        if problem.id in seen:
            raise ConfigError(f"{where}: id {problem.id!r} appears twice")
        seen.add(problem.id)
    if shape is None:
        raise ConfigError(f"problems file {path} has no problems")
    return ProblemSet(path, shape, frozenset(seen), first_answer, limit)


def _parse(path: Path, limit: int | None) -> Iterator[tuple[Problem, str, str]]:
    """The file's problems in order, each with where it is and the file's shape (set by the first record)."""
    shape, count = None, 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise ConfigError(f"{path}:{number}: not a JSON object") from None
                if not isinstance(record, dict):
                    raise ConfigError(f"{path}:{number}: not a JSON object")
                shape = shape or detect_shape(record)
                where = f"{path}:{number}"
                yield _problem(record, shape, where), where, shape
                count += 1
                if limit and count >= limit:
                    return
    except FileNotFoundError:
        raise ConfigError(f"problems file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"problems file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read problems file {path}: {exc.strerror}") from None


def _problem(record: dict, shape: str, where: str) -> Problem:
    question = next((record[k] for k in QUESTION_KEYS if isinstance(record.get(k), str) and record[k].strip()),
                    None)
    if question is None:
        raise ConfigError(f"{where}: no question (one of {', '.join(QUESTION_KEYS)})")
    answer = _gold(record, shape, where)
    choices = tuple(str(c) for c in record.get("choices") or ())
    if shape == "choice":
        if not choices or len(choices) > len(LETTERS):
            raise ConfigError(f"{where}: choices must be a list of 1 to {len(LETTERS)} options")
        if answer not in LETTERS[:len(choices)]:
            raise ConfigError(f"{where}: answer {answer!r} is not one of the choice letters")
    uid = record.get("id", record.get("unique_id"))
    uid = str(uid) if uid is not None else hashlib.sha256(question.encode()).hexdigest()[:16]
    return Problem(uid, question, answer, choices)


def _gold(record: dict, shape: str, where: str) -> str:
    answer = record.get("answer")
    if shape == "gsm8k":
        match = GSM8K_ANSWER.search(str(answer or ""))
        if match is None:
            raise ConfigError(f"{where}: a GSM8K answer must end in '#### N'")
        return match.group(1).replace(",", "")
    if shape == "math":
        if answer is not None and str(answer).strip():
            return str(answer).strip()  # MATH-500 carries it; the boxed solution is the fallback
        boxed = last_boxed(str(record.get("solution", "")))
        if boxed is None:
            raise ConfigError(f"{where}: no answer and no \\boxed{{}} in the solution")
        return boxed
    if shape == "choice":
        if isinstance(answer, int) and not isinstance(answer, bool):
            return LETTERS[answer] if 0 <= answer < len(LETTERS) else str(answer)
        return str(answer or "").strip().upper()
    if answer is None or not str(answer).strip():
        raise ConfigError(f"{where}: no answer")
    return str(answer).strip()
