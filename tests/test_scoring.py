"""Scoring and pruning are pure functions: test them without any model."""

from __future__ import annotations

import math

import pytest

from engine.scoring import Beam, beam_score, mean_logprob, rank, select, unique


def beam(tokens, logprobs, *, finished=False, alpha=1.0, length_penalty=1.0) -> Beam:
    return Beam(tuple(tokens), tuple(logprobs), finished=finished, score=beam_score(logprobs, alpha, length_penalty))


def test_score_is_alpha_times_length_normalised_logprob():
    assert beam_score([-1.0, -2.0, -3.0], alpha=4.0, length_penalty=1.0) == pytest.approx(4.0 * -6.0 / 3)
    assert beam_score([-1.0, -2.0, -3.0], alpha=1.0, length_penalty=0.0) == pytest.approx(-6.0)
    assert beam_score([-1.0, -1.0, -1.0, -1.0], alpha=1.0, length_penalty=0.5) == pytest.approx(-4.0 / 2.0)
    assert beam_score([], alpha=4.0, length_penalty=1.0) == 0.0


def test_alpha_never_changes_the_ranking():
    candidates = [[-0.1, -2.0], [-0.5, -0.6, -0.7], [-1.5], [-0.2, -0.2, -0.2, -3.0]]
    orders = set()
    for alpha in (0.25, 1.0, 4.0, 10.0):
        scored = [Beam((i,), tuple(lp), score=beam_score(lp, alpha, 0.6)) for i, lp in enumerate(candidates)]
        orders.add(tuple(b.token_ids for b in rank(scored)))
    assert len(orders) == 1


def test_length_penalty_moves_the_ranking_between_short_and_long():
    short, long = [-1.0], [-0.6, -0.6, -0.6]
    assert beam_score(short, 1.0, 0.0) > beam_score(long, 1.0, 0.0)  # raw sum favours the short answer
    assert beam_score(short, 1.0, 1.0) < beam_score(long, 1.0, 1.0)  # the mean favours the long one


def test_mean_logprob():
    assert mean_logprob([-1.0, -3.0]) == -2.0
    assert mean_logprob([]) == 0.0


def test_rank_breaks_ties_on_tokens_so_order_is_stable():
    a, b = beam([5, 1], [-1.0, -1.0]), beam([2, 9], [-1.0, -1.0])
    assert [x.token_ids for x in rank([a, b])] == [(2, 9), (5, 1)]
    assert [x.token_ids for x in rank([b, a])] == [(2, 9), (5, 1)]


def test_unique_drops_repeated_token_sequences():
    kept, dropped = unique([beam([1, 2], [-1, -1]), beam([1, 2], [-1, -1]), beam([1, 3], [-1, -1])])
    assert [b.token_ids for b in kept] == [(1, 2), (1, 3)]
    assert dropped == 1


def test_select_keeps_the_best_width_and_sets_finished_aside():
    candidates = [
        beam([1], [-0.1], finished=True),
        beam([2], [-0.2]),
        beam([3], [-0.3]),
        beam([4], [-0.4]),
        beam([2], [-0.2]),  # duplicate of the second
    ]
    selection = select(candidates, beam_width=3)
    assert [b.token_ids for b in selection.finished] == [(1,)]
    assert [b.token_ids for b in selection.survivors] == [(2,), (3,)]
    assert [b.token_ids for b in selection.pruned] == [(4,)]
    assert selection.duplicates == 1


def test_select_with_fewer_candidates_than_width_keeps_them_all():
    selection = select([beam([7], [-math.log(2)])], beam_width=4)
    assert len(selection.survivors) == 1 and not selection.pruned
