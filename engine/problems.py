"""Problem files for eval: generic, GSM8K, MATH (MATH-500) and multiple choice, as users download them.

The shape is detected from the first record and every record must have it; what was detected is said in one
line. The gold answer is what a grader compares against: GSM8K's `#### 42`, MATH's `answer` field or the last
`\\boxed{...}` of its `solution`, a choice letter.
"""

from __future__ import annotations

import hashlib
import json
import re
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
    shape: str  # generic | gsm8k | math | choice
    problems: list[Problem]

    def describe(self, path: Path) -> str:
        return f"{path.name}: {len(self.problems)} problems, {SHAPE_NAMES[self.shape]}"


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
    """Every problem of a .jsonl file, checked whole before any request is sent."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"problems file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"problems file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read problems file {path}: {exc.strerror}") from None
    shape, problems, seen = None, [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a JSON object") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: not a JSON object")
        shape = shape or detect_shape(record)
        problem = _problem(record, shape, f"{path}:{number}")
        if problem.id in seen:
            raise ConfigError(f"{path}:{number}: id {problem.id!r} appears twice")
        seen.add(problem.id)
        problems.append(problem)
        if limit and len(problems) >= limit:
            break
    if not problems:
        raise ConfigError(f"problems file {path} has no problems")
    return ProblemSet(shape, problems)


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
