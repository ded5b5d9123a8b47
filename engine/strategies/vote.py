"""Majority vote (self-consistency): N whole answers from the proposal, grouped by what they answer; the largest
group wins, a tie going to the group whose members' target scores (alpha * log p) sum higher.

What an answer "answers" is the grader's extracted answer when an eval gives one (`answer_key`), and otherwise
the answer's last non-empty line, lower-cased with its spacing and end punctuation normalised. Answers with
nothing to group by (no extracted answer) take no part in the vote.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from engine.registry import Column, PopulationView, StrategyInfo
from engine.scoring import Candidate, rank
from engine.strategies.base import Outcome, SearchContext, stop_reason_of
from engine.strategies.best_of_n import BestOfN

BY_FINAL_LINE = "the normalised final line"
BY_GRADER = "the grader's extracted answer"


def final_line(text: str) -> str | None:
    """The answer's last non-empty line, lower-cased, spacing collapsed, surrounding punctuation dropped."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    line = " ".join(lines[-1].lower().split())
    return re.sub(r"^[\W_]+|[\W_]+$", "", line) or None


def tally(keys: list[str | None], targets: list[float]) -> list[tuple[str, int, float]]:
    """(group, votes, summed target) for every group, the winner first: most votes, then the higher sum."""
    votes: dict[str, int] = defaultdict(int)
    sums: dict[str, float] = defaultdict(float)
    for key, target in zip(keys, targets, strict=True):
        if key is not None:
            votes[key] += 1
            sums[key] += target
    return sorted(((key, votes[key], sums[key]) for key in votes), key=lambda g: (-g[1], -g[2], g[0]))


class MajorityVote(BestOfN):
    def count(self, search: SearchContext) -> int:
        return search.settings.votes

    def choose(self, search: SearchContext, answers: list[Candidate]) -> Outcome:
        key = search.answer_key or final_line
        keys = [key(answer.text) for answer in answers]
        groups = tally(keys, [answer.target(search.alpha) for answer in answers])
        group_of = {id(answer): k for answer, k in zip(answers, keys, strict=True)}
        votes = {k: count for k, count, _ in groups}
        members = [search.member(a, slot, "finished" if a.finished else "kept", group=group_of[id(a)],
                                 votes=votes.get(group_of[id(a)], 0))
                   for slot, a in enumerate(answers)]
        winner = groups[0][0] if groups else None
        ranked = rank(answers)
        chosen = [a for a in ranked if group_of[id(a)] == winner] if winner is not None else ranked
        stats = {
            "grouped_by": BY_GRADER if search.answer_key else BY_FINAL_LINE,
            "groups": [{"answer": k, "votes": count, "target_sum": round(total, 4)} for k, count, total in groups],
            "no_answer": sum(k is None for k in keys),
        }
        members.sort(key=lambda m: (-m.votes, -m.target if math.isfinite(m.target) else math.inf))
        search.report(members, chosen[0])
        return Outcome(chosen[0], ranked, stop_reason_of(answers), stats=stats)


INFO = StrategyInfo(
    "vote", MajorityVote,
    lambda settings: (f"the majority of {settings.votes}: the answer most proposals give (self-consistency), "
                      "grouped by the grader's extracted answer in eval and by the final line elsewhere; not a draw "
                      "from p^alpha"),
    PopulationView("Votes", (Column("votes", 5, "votes"), Column("answers", 12, "group"),
                             Column("target", 9, "target", ".3f"), Column("tokens", 6, "tokens"))),
    sizes=("votes",), grows=("votes",), width="votes",
)
