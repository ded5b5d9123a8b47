"""Block-wise power beam search on the real embedded model, and under failures on a loopback endpoint."""

from __future__ import annotations

import pytest

from engine.backends.factory import open_sampler
from engine.events import (
    PopulationUpdated,
    RequestFinished,
    RequestStarted,
    RoundFinished,
    RoundStarted,
    SearchFinished,
    SearchStarted,
)
from engine.scoring import beam_score
from engine.search import run_search
from engine.settings import BackendSettings, SearchSettings
from tests.conftest import openai_settings
from tests.fault_server import FaultConfig

LOCAL = BackendSettings(max_concurrent=16)


async def test_seeded_parallel_search_equals_sequential(layout_sampler, small_search):
    settings = small_search.replace(beam_width=3, n_per_beam=3, temperature=0.8)
    parallel = await run_search(settings.replace(mode="parallel"), layout_sampler, LOCAL)
    sequential = await run_search(settings.replace(mode="sequential"), layout_sampler, LOCAL)
    assert parallel.error is None and sequential.error is None
    assert [b.token_ids for b in parallel.candidates] == [b.token_ids for b in sequential.candidates]
    assert [b.score for b in parallel.candidates] == pytest.approx([b.score for b in sequential.candidates],
                                                                   abs=1e-6)
    assert parallel.requests == sequential.requests


async def test_events_tell_the_whole_story_of_a_search(local_sampler, small_search):
    events = []
    result = await run_search(small_search, local_sampler, LOCAL, events.append, run_id="r1")
    assert {e.run_id for e in events} == {"r1"}
    assert isinstance(events[0], SearchStarted) and events[0].seed == small_search.seed
    assert isinstance(events[-1], SearchFinished) and events[-1].result is result
    started = [e for e in events if isinstance(e, RequestStarted)]
    finished = [e for e in events if isinstance(e, RequestFinished)]
    assert len(started) == len(finished) == result.requests
    assert all(e.latency_s > 0 and e.completion_tokens > 0 for e in finished)
    rounds = [e for e in events if isinstance(e, RoundFinished)]
    assert [r.round for r in rounds] == list(range(1, len(rounds) + 1))
    assert [r.block for r in rounds] == list(range(1, len(rounds) + 1))  # beam search: one round per block
    assert sum(r.requests for r in rounds) == result.requests
    for round_ in rounds:
        assert round_.sum_request_s == pytest.approx(
            sum(e.latency_s for e in finished if e.round == round_.round), rel=1e-6)
    first_round = next(e for e in events if isinstance(e, RoundStarted))
    assert first_round.requests == small_search.beam_width  # every beam asks once, with n continuations


async def test_candidates_are_scored_from_their_logprobs_and_the_best_width_survive(local_sampler, small_search):
    events = []
    result = await run_search(small_search, local_sampler, LOCAL, events.append)
    scored = [e for e in events if isinstance(e, PopulationUpdated)]
    assert scored
    for event in scored:
        scores = [m.score for m in event.members]
        assert scores == sorted(scores, reverse=True)
        # Finished beams are set aside and stay in the population; the width bounds the active ones.
        kept = [m for m in event.members if m.status == "kept"]
        pruned = [m for m in event.members if m.status == "pruned"]
        assert len(kept) <= small_search.beam_width and (kept or any(m.finished for m in event.members))
        assert not (kept and pruned) or max(m.score for m in pruned) <= min(m.score for m in kept)
        assert len(kept) + len(pruned) + event.duplicates <= small_search.beam_width * small_search.n_per_beam
    for beam in result.candidates:
        assert beam.score == pytest.approx(beam_score(beam.logprobs, small_search.alpha, small_search.length_penalty))
        assert beam.length <= small_search.max_tokens
        assert local_sampler.detokenize(beam.token_ids) == beam.text
    assert len(result.candidates) <= small_search.beam_width


async def test_temperature_defaults_to_one_over_alpha():
    assert SearchSettings(alpha=4).proposal_temperature == 0.25
    assert SearchSettings(alpha=4, temperature=0.7).proposal_temperature == 0.7


async def test_beams_continue_from_token_ids_not_text(local_sampler, small_search):
    """Each later request starts with exactly the tokens an earlier request returned, never re-tokenised text."""
    calls = []
    original = local_sampler.sample

    async def spy(request):
        continuations = await original(request)
        calls.append((request, continuations))
        return continuations

    local_sampler.sample = spy
    try:
        await run_search(small_search.replace(max_tokens=18, temperature=1.0), local_sampler, LOCAL)
    finally:
        del local_sampler.sample
    prompt = calls[0][0].prompt_ids
    produced = {()}
    later = 0
    for request, continuations in calls:
        suffix = request.prompt_ids[len(prompt):]
        assert request.prompt_ids[: len(prompt)] == prompt
        assert suffix in produced
        later += bool(suffix)
        produced |= {suffix + c.token_ids for c in continuations}
    assert later > 0


@pytest.mark.parametrize("fault_server", [FaultConfig(eos_rate=0.02)], indirect=True)
async def test_failed_candidates_are_dropped_and_counted_and_the_search_goes_on(fault_server):
    limits = openai_settings(fault_server.base_url, max_retries=0)
    sampler = await open_sampler(limits)
    fault_server.inject("", "500", "", "400")  # two of block one's four requests fail for good
    settings = SearchSettings(prompt="q", beam_width=4, n_per_beam=2, block_tokens=4, max_tokens=12, seed=1)
    result = await run_search(settings, sampler, limits)
    await sampler.aclose()
    assert result.error is None and result.answer is not None
    assert result.usage["failures"] == 2
    assert result.rounds[0].failed == 2
    assert result.answer.length == 12 or result.answer.finished


async def test_a_whole_block_failing_ends_the_search_with_a_clear_error_and_keeps_the_best(fault_server):
    limits = openai_settings(fault_server.base_url, max_retries=0)
    sampler = await open_sampler(limits)
    settings = SearchSettings(prompt="q", beam_width=2, n_per_beam=2, block_tokens=4, max_tokens=16, seed=1)
    fault_server.inject("", "")  # block one is fine
    fault_server.config.rate_500 = 1.0  # everything after fails
    events = []
    result = await run_search(settings, sampler, limits, events.append)
    await sampler.aclose()
    assert result.error and "block 2 failed" in result.error and "HTTP 500" in result.error
    assert result.stop_reason == "error"
    assert result.answer is not None and result.answer.length == 4  # the best beam of block one
    assert isinstance(events[-1], SearchFinished) and events[-1].result.error == result.error


@pytest.mark.parametrize("fault_server", [FaultConfig(eos_rate=0.3)], indirect=True)
async def test_search_stops_when_enough_beams_have_finished(fault_server):
    """Answers end at an end-of-sequence token (a synthetic one, so the test does not hang on what a real model
    happens to say on this CPU); the search stops once beam_width of them have."""
    limits = openai_settings(fault_server.base_url)
    sampler = await open_sampler(limits)
    settings = SearchSettings(prompt="q", beam_width=2, n_per_beam=3, block_tokens=8, max_tokens=64, seed=2)
    result = await run_search(settings, sampler, limits)
    await sampler.aclose()
    assert result.stop_reason == "finished"
    assert all(beam.finished for beam in result.candidates)
    assert len(result.rounds) < settings.max_blocks


@pytest.mark.parametrize("spec", ["mcmc:2x2", "smc:4", "beam:2x2", "best-of-n:3", "vote:3"])
async def test_a_search_whose_every_answer_ended_in_its_last_block_says_finished(spec):
    """One block as long as the answer may be: every chain, particle or beam ends inside it (a two-word chain
    that always stops), and the result says so, not max_tokens."""
    from tests.synthetic import word_chain

    sampler = word_chain("Yes . No .")
    settings = SearchSettings(prompt="?", block_tokens=6, max_tokens=6, seed=1, temperature=1.0).with_spec(spec)
    result = await run_search(settings, sampler, BackendSettings())
    assert result.error is None and result.candidates and all(c.finished for c in result.candidates)
    assert result.stop_reason == "finished" and result.to_json()["stop_reason"] == "finished"


async def test_greedy_json_says_temperature_0_and_round_times_are_rounded():
    from tests.synthetic import word_chain

    sampler = word_chain("The sky is blue . The sky is red .")
    result = await run_search(SearchSettings(strategy="greedy", prompt="?", max_tokens=6, block_tokens=6, seed=1),
                              sampler, BackendSettings())
    data = result.to_json()
    assert data["settings"]["temperature"] == 0.0  # greedy runs at 0, whatever the proposal's would be
    for row in data["timing"]["rounds"]:
        for key in ("wall_s", "sum_request_s"):
            assert row[key] == round(row[key], 4)
