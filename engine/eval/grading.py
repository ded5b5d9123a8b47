"""Graders: read the answer out of a model's text and compare it with the gold one.

An answer that cannot be extracted is wrong and counted as "no answer", never an error. LaTeX equivalence goes
through math-verify (Hugging Face's grader), not hand-written normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from engine.errors import ConfigError
from engine.eval.problems import LETTERS, Problem

GRADERS = ("auto", "numeric", "math", "choice", "exact", "regex:PATTERN")
NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\$?\s?\.\d+")
ANSWER_CUE = re.compile(r"answer\s*(?:is\s*:?|:)\s*", re.IGNORECASE)
TEMPLATES = {
    "numeric": "{question}\nEnd your reply with the final answer as a number.",
    "math": "{question}\nPut the final answer in \\boxed{{}}.",
    "choice": "{question}\n{choices}\nAnswer with the letter of the correct choice.",
    "exact": "{question}\nReply with the answer only.",
    "regex": "{question}",
}


@dataclass(frozen=True)
class Grade:
    extracted: str | None  # None: no answer could be read
    correct: bool


@dataclass(frozen=True)
class Grader:
    kind: str  # numeric | math | choice | exact | regex
    pattern: re.Pattern | None = None

    @property
    def name(self) -> str:
        return f"regex:{self.pattern.pattern}" if self.pattern else self.kind

    def grade(self, text: str, problem: Problem) -> Grade:
        if self.kind == "math":
            return _math_grade(text, problem.answer)
        extracted = {"numeric": last_number, "exact": _exact_answer,
                     "choice": lambda t: choice_letter(t, len(problem.choices)),
                     "regex": lambda t: _regex_answer(t, self.pattern)}[self.kind](text)
        if extracted is None:
            return Grade(None, False)
        return Grade(extracted, self._same(extracted, problem.answer))

    def answer_key(self, problem: Problem) -> Callable[[str], str | None]:
        """What an answer to `problem` answers, in one spelling per value, so equal answers group together in a
        vote: numbers by value, the others as the grader compares them."""
        def key(text: str) -> str | None:
            extracted = self.grade(text, problem).extracted
            if extracted is None:
                return None
            number = _number(extracted) if self.kind == "numeric" else None
            return str(number) if number is not None else _normal(extracted)

        return key

    def _same(self, extracted: str, gold: str) -> bool:
        if self.kind == "numeric":
            gold_number = _number(last_number(gold) or "")
            return gold_number is not None and _number(extracted) == gold_number
        return _normal(extracted) == _normal(gold)


def parse_grader(spec: str, shape: str, sample_gold: str) -> Grader:
    """`auto` follows the problem file's shape (and, for generic files, what the gold answers look like)."""
    if spec.startswith("regex:"):
        try:
            pattern = re.compile(spec[len("regex:"):])
        except re.error as exc:
            raise ConfigError(f"--grader regex does not compile: {exc}") from None
        if pattern.groups != 1:
            raise ConfigError(f"--grader regex must have exactly one group, {spec!r} has {pattern.groups}")
        return Grader("regex", pattern)
    if spec == "auto":
        if shape in ("gsm8k", "choice", "math"):
            return Grader({"gsm8k": "numeric"}.get(shape, shape))
        if _number(sample_gold) is not None:
            return Grader("numeric")
        return Grader("math" if re.search(r"[\\^{}]", sample_gold) else "exact")
    if spec not in GRADERS:
        raise ConfigError(f"--grader must be one of {', '.join(GRADERS)}, got {spec!r}")
    return Grader(spec)


def prompt_for(template: str, problem: Problem) -> str:
    choices = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(problem.choices))
    return template.format(question=problem.question, choices=choices)


def check_template(template: str) -> str:
    try:
        template.format(question="", choices="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--prompt-template may use only {{question}} and {{choices}}: {exc}") from None
    if "{question}" not in template:
        raise ConfigError("--prompt-template must contain {question}")
    return template


def last_number(text: str) -> str | None:
    """The last number in the text, tolerant of thousands commas, `$` and units after it."""
    matches = [m.group().replace("$", "").replace(",", "").replace(" ", "") for m in NUMBER.finditer(text)]
    matches = [m for m in matches if _number(m) is not None]
    return matches[-1] if matches else None


def choice_letter(text: str, count: int) -> str | None:
    letters = LETTERS[:count]
    for pattern in (rf"answer\s*(?:is|:)?\s*\(?([{letters}])\b", rf"\(([{letters}])\)", rf"\b([{letters}])\b"):
        found = re.findall(pattern, text, flags=re.IGNORECASE if pattern.startswith("answer") else 0)
        if found:
            return found[-1].upper()
    return None


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.rstrip("."))
    except (ValueError, ZeroDivisionError):
        return None


def _math_grade(text: str, gold: str) -> Grade:
    from math_verify import parse, verify

    answer = parse(text)
    if not answer:
        return Grade(None, False)
    gold_parsed = parse(f"${gold}$") or parse(gold)
    return Grade(str(answer[-1]), bool(gold_parsed) and verify(gold_parsed, answer))


def _exact_answer(text: str) -> str | None:
    cues = list(ANSWER_CUE.finditer(text))
    tail = text[cues[-1].end():] if cues else text
    lines = [line.strip() for line in tail.strip().splitlines() if line.strip()]
    return lines[0] if cues and lines else (lines[-1] if lines else None)


def _regex_answer(text: str, pattern: re.Pattern) -> str | None:
    matches = list(pattern.finditer(text))
    return matches[-1].group(1) if matches and matches[-1].group(1) is not None else None


def _normal(text: str) -> str:
    return " ".join(text.strip().strip(".").casefold().split())
