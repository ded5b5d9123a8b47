"""Scores, weights, acceptance ratios and resampling are pure functions: test them without any model."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from engine.scoring import (
    CUT_FLOOR,
    Candidate,
    accepts,
    beam_score,
    cut_log_probabilities,
    effective_sample_size,
    log_sum_exp,
    mean_logprob,
    mh_log_weight,
    mtm_log_acceptance,
    normalized_weights,
    rank,
    select,
    smc_log_weight_increment,
    sps_log_future_mass,
    sps_token_probabilities,
    systematic_resample,
    target_logprob,
    unique,
    weighted_choice,
)


def candidate(tokens, logprobs, *, finished=False, alpha=1.0, length_penalty=1.0) -> Candidate:
    return Candidate(tuple(tokens), tuple(logprobs), finished=finished,
                     score=beam_score(logprobs, alpha, length_penalty))


def test_score_is_alpha_times_length_normalised_logprob():
    assert beam_score([-1.0, -2.0, -3.0], alpha=4.0, length_penalty=1.0) == pytest.approx(4.0 * -6.0 / 3)
    assert beam_score([-1.0, -2.0, -3.0], alpha=1.0, length_penalty=0.0) == pytest.approx(-6.0)
    assert beam_score([-1.0, -1.0, -1.0, -1.0], alpha=1.0, length_penalty=0.5) == pytest.approx(-4.0 / 2.0)
    assert beam_score([], alpha=4.0, length_penalty=1.0) == 0.0


def test_target_is_alpha_times_the_sum_of_log_p():
    assert target_logprob([-1.0, -0.5], 4.0) == pytest.approx(-6.0)
    assert Candidate((1, 2), (-1.0, -0.5)).target(2.0) == pytest.approx(-3.0)


def test_alpha_never_changes_the_beam_ranking():
    candidates = [[-0.1, -2.0], [-0.5, -0.6, -0.7], [-1.5], [-0.2, -0.2, -0.2, -3.0]]
    orders = set()
    for alpha in (0.25, 1.0, 4.0, 10.0):
        scored = [Candidate((i,), tuple(lp), score=beam_score(lp, alpha, 0.6)) for i, lp in enumerate(candidates)]
        orders.add(tuple(c.token_ids for c in rank(scored)))
    assert len(orders) == 1


def test_length_penalty_moves_the_ranking_between_short_and_long():
    short, long = [-1.0], [-0.6, -0.6, -0.6]
    assert beam_score(short, 1.0, 0.0) > beam_score(long, 1.0, 0.0)  # raw sum favours the short answer
    assert beam_score(short, 1.0, 1.0) < beam_score(long, 1.0, 1.0)  # the mean favours the long one


def test_mean_logprob():
    assert mean_logprob([-1.0, -3.0]) == -2.0
    assert mean_logprob([]) == 0.0


def test_rank_breaks_ties_on_tokens_so_order_is_stable():
    a, b = candidate([5, 1], [-1.0, -1.0]), candidate([2, 9], [-1.0, -1.0])
    assert [x.token_ids for x in rank([a, b])] == [(2, 9), (5, 1)]
    assert [x.token_ids for x in rank([b, a])] == [(2, 9), (5, 1)]


def test_unique_drops_repeated_token_sequences():
    kept, dropped = unique([candidate([1, 2], [-1, -1]), candidate([1, 2], [-1, -1]), candidate([1, 3], [-1, -1])])
    assert [c.token_ids for c in kept] == [(1, 2), (1, 3)]
    assert dropped == 1


def test_select_keeps_the_best_width_and_sets_finished_aside():
    candidates = [
        candidate([1], [-0.1], finished=True),
        candidate([2], [-0.2]),
        candidate([3], [-0.3]),
        candidate([4], [-0.4]),
        candidate([2], [-0.2]),  # duplicate of the second
    ]
    selection = select(candidates, beam_width=3)
    assert [c.token_ids for c in selection.finished] == [(1,)]
    assert [c.token_ids for c in selection.survivors] == [(2,), (3,)]
    assert [c.token_ids for c in selection.pruned] == [(4,)]
    assert selection.duplicates == 1


def test_select_with_fewer_candidates_than_width_keeps_them_all():
    selection = select([candidate([7], [-math.log(2)])], beam_width=4)
    assert len(selection.survivors) == 1 and not selection.pruned


def mh_ratio(alpha, new_logp, old_logp, new_logq, old_logq, old_length, new_length) -> float:
    """Karan & Du's ratio for one try: a proposal against the current answer."""
    return mtm_log_acceptance([mh_log_weight(alpha, new_logp, new_logq, -math.log(new_length))],
                              [mh_log_weight(alpha, old_logp, old_logq, -math.log(old_length))])


def test_mh_acceptance_is_the_power_ratio_corrected_by_the_proposal():
    # Same length: alpha * (log p' - log p) + log q - log q'.
    ratio = mh_ratio(4.0, [-0.5, -0.5], [-1.0, -1.0], [-0.2, -0.3], [-0.4, -0.4], 6, 6)
    assert ratio == pytest.approx(4.0 * (-1.0 + 2.0) + (-0.8) - (-0.5))
    # A proposal exactly as likely under the target as under the proposal is always accepted.
    assert mh_ratio(1.0, [-2.0], [-1.0], [-2.0], [-1.0], 5, 5) == pytest.approx(0.0)
    # A shorter answer makes the reverse move likelier: + log(old length / new length).
    assert mh_ratio(1.0, [-1.0], [-1.0], [-1.0], [-1.0], 8, 4) == pytest.approx(math.log(2))


def test_uniform_cuts_are_one_over_the_length_and_entropy_cuts_follow_the_rises_of_entropy():
    assert cut_log_probabilities("uniform", 4) == [-math.log(4)] * 4
    # Entropy rises at positions 0 (from 0 to 1.0) and 2 (from 0.2 to 1.4): 1.0 and 1.2 of the 2.2 of rises.
    weights = [math.exp(w) for w in cut_log_probabilities("entropy", 4, [1.0, 0.2, 1.4, 1.3])]
    floor = CUT_FLOOR / 4
    assert weights == pytest.approx([floor + (1 - CUT_FLOOR) * 1.0 / 2.2, floor,
                                     floor + (1 - CUT_FLOOR) * 1.2 / 2.2, floor])
    assert math.fsum(weights) == pytest.approx(1.0)
    # An answer whose entropy never rises is cut uniformly; every position stays possible.
    assert cut_log_probabilities("entropy", 3, [0.0, 0.0, 0.0]) == [-math.log(3)] * 3
    with pytest.raises(ValueError):
        cut_log_probabilities("entropy", 3, [1.0])


def test_multiple_try_acceptance_is_summed_proposal_weights_over_summed_reference_weights():
    proposals, references = [0.0, math.log(3)], [math.log(2), math.log(2)]  # weights 1 + 3 against 2 + 2
    assert mtm_log_acceptance(proposals, references) == pytest.approx(0.0)
    assert mtm_log_acceptance([math.log(6)], [math.log(2)]) == pytest.approx(math.log(3))


def test_accepts_with_probability_min_one_exp_ratio():
    assert accepts(0.3, 0.999) and accepts(0.0, 0.999)
    rng = random.Random(0)
    rate = sum(accepts(math.log(0.25), rng.random()) for _ in range(20000)) / 20000
    assert rate == pytest.approx(0.25, abs=0.01)


def test_smc_weight_increment_is_alpha_log_p_minus_log_q():
    assert smc_log_weight_increment(4.0, [-1.0, -0.5], [-0.2, -0.1]) == pytest.approx(4 * -1.5 + 0.3)


def test_normalised_weights_and_ess():
    assert normalized_weights([0.0, 0.0]) == pytest.approx([0.5, 0.5])
    assert normalized_weights([math.log(3), 0.0]) == pytest.approx([0.75, 0.25])
    assert effective_sample_size([0.0] * 8) == pytest.approx(8.0)
    assert effective_sample_size([0.0, -1000.0, -1000.0]) == pytest.approx(1.0)
    assert log_sum_exp([math.log(1), math.log(3)]) == pytest.approx(math.log(4))
    assert normalized_weights([-math.inf, 0.0]) == pytest.approx([0.0, 1.0])


def test_systematic_resampling_copies_in_proportion_to_weight():
    weights = [0.5, 0.25, 0.125, 0.125]
    assert systematic_resample(weights, 0.1) == [0, 0, 1, 2]  # points 0.025, 0.275, 0.525, 0.775
    counts = Counter()
    rng = random.Random(1)
    for _ in range(4000):
        counts.update(systematic_resample(weights, rng.random()))
    for index, weight in enumerate(weights):
        assert counts[index] / (4 * 4000) == pytest.approx(weight, abs=0.01)
    # Systematic resampling keeps every particle whose weight is at least 1/N.
    assert {0, 1} <= set(systematic_resample(weights, 0.999))


def test_weighted_choice_follows_the_weights():
    rng = random.Random(2)
    counts = Counter(weighted_choice([1.0, 3.0], rng.random()) for _ in range(8000))
    assert counts[1] / 8000 == pytest.approx(0.75, abs=0.02)
    assert weighted_choice([0.0, 0.0, 1.0], 0.0) == 2


def test_sps_with_exact_future_masses_is_the_power_conditional():
    """p^alpha(v) * zeta(v), normalised, is p^alpha's own next-token conditional; an end token's zeta is 1."""
    logp, zeta = [math.log(0.5), math.log(0.3), math.log(0.2)], [0.2, 1.0, 0.7]
    truth = [p ** 2 * z for p, z in zip([0.5, 0.3, 0.2], zeta, strict=True)]
    probabilities = sps_token_probabilities(logp, [[math.log(z)] for z in zeta], 2.0)
    assert probabilities == pytest.approx([t / sum(truth) for t in truth])
    assert sps_log_future_mass([math.log(0.5), math.log(1.5)]) == pytest.approx(0.0)
    assert sps_log_future_mass([0.0]) == 0.0


@pytest.mark.parametrize("rollouts", [3, 4])
def test_the_jackknife_shrinks_the_bias_of_the_ratio(rollouts):
    """Every equally likely set of rollouts enumerated: a candidate whose rollout weights are 0.1 or 1.9 (mean 1,
    so zeta = 1) against an end token (zeta = 1 exactly). The plain ratio's expectation misses the truth by
    0.059 (M = 3) and 0.041 (M = 4); the jackknife's by 0.018 and 0.014."""
    logp, values = [math.log(0.6), math.log(0.4)], [math.log(0.1), math.log(1.9)]
    truth = 0.36 / (0.36 + 0.16)
    sets = list(itertools.product(values, repeat=rollouts))
    plain = math.fsum(sps_token_probabilities(logp, [list(s), [0.0]], 2.0, jackknife=False)[0] for s in sets)
    corrected = math.fsum(sps_token_probabilities(logp, [list(s), [0.0]], 2.0)[0] for s in sets)
    plain_bias, corrected_bias = abs(plain / len(sets) - truth), abs(corrected / len(sets) - truth)
    assert plain_bias > 0.03 and corrected_bias < plain_bias / 2


def test_sps_probabilities_stay_a_distribution_when_the_jackknife_goes_negative():
    probabilities = sps_token_probabilities([math.log(0.9), math.log(0.1)], [[-20.0, 5.0], [-20.0, -20.0]], 2.0)
    assert all(p >= 0 for p in probabilities) and math.fsum(probabilities) == pytest.approx(1.0)
