"""`beamtui gen`: the real model end to end, the loopback endpoint for concurrency, kills and resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from engine.backends.tinker_sdk import TinkerSampler
from engine.errors import ConfigError
from engine.gen.generator import Generator, GenSettings, question_id, sample_key
from engine.jsonl import repair_and_load
from engine.request_layer import RequestLayer
from engine.settings import BackendSettings
from tests.conftest import ROOT, run_cli
from tests.fault_server import FaultConfig
from tests.tinker_standin import LocalTinkerClient


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_questions(path, count):
    path.write_text("".join(f"What is {i} plus {i}?\n" for i in range(count)))
    return path


def synthetic(server):
    return ["--backend", "openai", "--base-url", server.base_url, "--model", "synthetic", "--tokenizer", "embedded"]


def test_local_model_end_to_end_with_samples(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "a", "question": "Name a color."}\n{"prompt": "Name a fruit."}\n')
    out = tmp_path / "out.jsonl"
    done = run_cli("gen", "--questions", str(questions), "--out", str(out), "--num-samples", "2",
                   "--max-tokens", "12", "--system-prompt", "Answer with one word.", "--quiet")
    assert done.returncode == 0, done.stderr
    records = lines(out)
    assert sorted((r["id"], r["sample"]) for r in records) == sorted(
        [("a", 0), ("a", 1), (question_id("Name a fruit."), 0), (question_id("Name a fruit."), 1)])
    for record in records:
        user, assistant = record["messages"]
        assert user["role"] == "user" and user["content"] in ("Name a color.", "Name a fruit.")
        assert "Answer with one word" not in user["content"]  # the student never sees the teacher's prompt
        assert assistant["role"] == "assistant" and assistant["content"]
        assert record["meta"]["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert record["meta"]["temperature"] == 0.7 and record["meta"]["completion_tokens"] >= 1
    assert "4 examples" in done.stderr and "examples/s" in done.stderr
    assert not (tmp_path / "out.errors.jsonl").exists()  # no failures, no errors file


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.1)], indirect=True)
def test_sliding_window_keeps_the_cap_full_and_never_over(fault_server, tmp_path):
    questions = write_questions(tmp_path / "q.txt", 60)
    out = tmp_path / "out.jsonl"
    done = run_cli("gen", "--questions", str(questions), "--out", str(out), *synthetic(fault_server),
                   "--max-concurrent", "10", "--max-tokens", "4", "--quiet")
    assert done.returncode == 0, done.stderr
    assert len(lines(out)) == 60
    assert fault_server.stats.peak_in_flight == 10
    # 60 requests of 0.1 s through 10 slots: about 0.6 s of waiting, if the window never idles.
    seconds = float(done.stderr.split(" examples in ")[1].split("s")[0])
    assert seconds < 2.0


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.2)], indirect=True)
def test_kill_9_then_rerun_gives_every_id_exactly_once(fault_server, tmp_path):
    questions = write_questions(tmp_path / "q.txt", 120)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out", str(out),
               *synthetic(fault_server), "--max-concurrent", "8", "--max-tokens", "4", "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(lines(out)) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = len(out.read_text().splitlines())
    assert 20 <= partial < 120
    done = run_cli(*command[3:])
    assert done.returncode == 0, done.stderr
    ids = Counter(r["id"] for r in lines(out))
    assert set(ids) == {question_id(f"What is {i} plus {i}?") for i in range(120)}
    assert set(ids.values()) == {1}
    assert f"{partial} already done" in done.stderr


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.05)], indirect=True)
def test_shards_together_hold_every_id_once_and_a_killed_shard_resumes(fault_server, tmp_path):
    questions = write_questions(tmp_path / "q.txt", 90)
    out = tmp_path / "teacher.jsonl"
    command = [sys.executable, "-m", "tui.cli", "gen", "--questions", str(questions), "--out", str(out),
               *synthetic(fault_server), "--max-concurrent", "2", "--max-tokens", "4", "--quiet"]
    killed = tmp_path / "teacher.shard-1-of-3.jsonl"
    process = subprocess.Popen(command + ["--shard", "1/3"], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(lines(killed)) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = len(killed.read_text().splitlines())
    assert partial >= 5
    reruns = {shard: run_cli(*command[3:], "--shard", shard) for shard in ("0/3", "1/3", "2/3")}
    assert all(done.returncode == 0 for done in reruns.values()), [d.stderr for d in reruns.values()]
    assert f"{partial} already done" in reruns["1/3"].stderr  # the killed shard resumed, it did not start over
    per_shard = [Counter(r["id"] for r in lines(tmp_path / f"teacher.shard-{i}-of-3.jsonl")) for i in range(3)]
    assert all(per_shard) and not out.exists()
    everything = Counter()
    for ids in per_shard:
        everything.update(ids)
    assert set(everything) == {question_id(f"What is {i} plus {i}?") for i in range(90)}
    assert set(everything.values()) == {1}


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.01)], indirect=True)
def test_a_torn_last_line_is_repaired(fault_server, tmp_path):
    questions = write_questions(tmp_path / "q.txt", 5)
    out = tmp_path / "out.jsonl"
    args = ["gen", "--questions", str(questions), "--out", str(out), *synthetic(fault_server), "--quiet",
            "--max-tokens", "4"]
    assert run_cli(*args).returncode == 0
    whole = out.read_text().splitlines()
    out.write_text("\n".join(whole[:3]) + "\n" + whole[3][: len(whole[3]) // 2])  # killed mid-write
    assert repair_and_load(out, sample_key) == {(json.loads(line)["id"], 0) for line in whole[:3]}
    assert out.read_text().endswith("\n")
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    records = lines(out)  # every line parses: the torn one is gone
    assert sorted(r["id"] for r in records) == sorted(json.loads(line)["id"] for line in whole)


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.01)], indirect=True)
def test_an_answer_the_regex_does_not_match_goes_to_the_errors_file(fault_server, tmp_path):
    questions = write_questions(tmp_path / "q.txt", 4)
    out = tmp_path / "out.jsonl"
    # Synthetic answers look like " w123 w456": every one has digits, none has "Final Answer:".
    done = run_cli("gen", "--questions", str(questions), "--out", str(out), *synthetic(fault_server), "--quiet",
                   "--max-tokens", "3", "--parse-regex", r"w(\d+)")
    assert done.returncode == 0
    for record in lines(out):
        assert record["messages"][1]["content"].isdigit()
        assert record["meta"]["raw"].strip().startswith("w")
    done = run_cli("gen", "--questions", str(questions), "--out", str(tmp_path / "b.jsonl"), *synthetic(fault_server),
                   "--quiet", "--max-tokens", "3", "--parse-regex", r"Final Answer: (\w+)")
    assert done.returncode == 1 and "failures 4" in done.stderr
    errors = lines(tmp_path / "b.errors.jsonl")
    assert len(errors) == 4 and all("no match" in e["error"] and e["raw"] for e in errors)
    assert lines(tmp_path / "b.jsonl") == []


async def test_gen_on_tinker_types(local_sampler, tmp_path):
    questions = write_questions(tmp_path / "q.txt", 3)
    backend = BackendSettings(backend="tinker", model="m", tokenizer="embedded")
    sampler = TinkerSampler(model="m", api_key=None, max_concurrent=4, timeout=30, tokenizer="embedded",
                            sampling_client=LocalTinkerClient(local_sampler))
    await sampler.start(None)
    settings = GenSettings(questions=questions, out=tmp_path / "out.jsonl", max_tokens=6, num_samples=2).validate()
    layer = RequestLayer(sampler, max_concurrent=4, timeout=30, max_retries=0)
    progress = await Generator(settings, backend, sampler, layer).run(3)
    assert progress.done == 6 and progress.failed == 0
    assert {r["meta"]["backend"] for r in lines(settings.out)} == {"tinker"}


def test_duplicate_questions_are_answered_once(tmp_path, local_sampler):
    questions = tmp_path / "q.txt"
    questions.write_text("Name a color.\nName a color.\nName a fruit.\n")
    settings = GenSettings(questions=questions, out=tmp_path / "out.jsonl", max_tokens=4).validate()
    layer = RequestLayer(local_sampler, max_concurrent=4, timeout=30, max_retries=0)
    progress = asyncio.run(Generator(settings, BackendSettings(), local_sampler, layer).run(3))
    assert progress.done == 2 and progress.duplicates == 1
    assert len(lines(settings.out)) == 2


async def test_a_question_that_cannot_be_rendered_stops_the_run_and_keeps_what_was_written(
        tmp_path, local_sampler, monkeypatch):
    questions = tmp_path / "q.txt"
    questions.write_text("".join(f"Say {i}.\n" for i in range(6)) + "BAD\n" + "".join(f"Say {i}!\n" for i in range(6)))
    render = local_sampler.render_chat

    def render_or_fail(messages):
        if messages[-1].content == "BAD":
            raise ConfigError("the model's chat template failed: no")
        return render(messages)

    monkeypatch.setattr(local_sampler, "render_chat", render_or_fail)
    settings = GenSettings(questions=questions, out=tmp_path / "out.jsonl", max_tokens=2).validate()
    layer = RequestLayer(local_sampler, max_concurrent=4, timeout=30, max_retries=0)
    with pytest.raises(ConfigError, match="chat template failed"):
        await asyncio.wait_for(Generator(settings, BackendSettings(), local_sampler, layer).run(13), 60)
    written = lines(settings.out)
    assert len(written) <= 12 and "BAD" not in {r["messages"][0]["content"] for r in written}
    assert layer.in_flight == 0  # every worker stopped, none left waiting on the backend


async def test_a_cap_larger_than_the_file_starts_a_worker_a_question_not_a_worker_a_slot(tmp_path, local_sampler):
    questions = write_questions(tmp_path / "q.txt", 3)
    settings = GenSettings(questions=questions, out=tmp_path / "out.jsonl", max_tokens=2).validate()
    layer = RequestLayer(local_sampler, max_concurrent=1_000_000, timeout=30, max_retries=0)
    workers = []

    class Counted(Generator):
        async def _work(self, *args) -> None:
            workers.append(1)
            await super()._work(*args)

    progress = await Counted(settings, BackendSettings(), local_sampler, layer).run(3)
    assert progress.done == 3 and len(workers) == 3


BAD_INPUT = [
    (["--questions", "/nonexistent.txt", "--out", "OUT"], "questions file not found"),
    (["--questions", "EMPTY", "--out", "OUT"], "has no questions"),
    (["--questions", "Q", "--out", "/proc/nope/out.jsonl"], "cannot write /proc/nope/out.jsonl"),
    (["--questions", "Q", "--out", "OUT", "--max-concurrent", "0"], "max-concurrent must be an integer >= 1"),
    (["--questions", "Q", "--out", "OUT", "--parse-regex", "("], "invalid --parse-regex"),
    (["--questions", "Q", "--out", "OUT", "--parse-regex", "no group"], "needs a group"),
    (["--questions", "Q", "--out", "OUT", "--num-samples", "0"], "num-samples must be an integer >= 1"),
    (["--questions", "BADJSONL", "--out", "OUT"], "not JSON"),
    (["--questions", "Q", "--out", "OUT", "--system-prompt-file", "/nonexistent"], "cannot read --system-prompt-file"),
    (["--questions", "Q", "--out", "OUT", "--system-prompt", "a", "--system-prompt-file", "Q"],
     "give --system-prompt or --system-prompt-file, not both"),
    (["--questions", "Q", "--out", "OUT", "--mode", "concurrent"], "invalid choice: 'concurrent'"),
    (["--questions", "Q", "--out", "OUT", "--strategy", "beam"], "--strategy does not apply to `beamtui gen`"),
    (["--questions", "Q", "--out", "OUT", "--shard", "3/3"], "I must be 0 to N-1"),
    (["--questions", "Q", "--out", "OUT", "--shard", "one of two"], "--shard takes I/N"),
    (["--questions", "Q", "--compare", "2", "--shard", "0/2"], "it takes no --shard"),
    (["--questions", "CLASH", "--out", "OUT"], "clash.jsonl:1 and "),
    (["--questions", "Q", "--out", "OUT", "--seed", "-5"], "seed must be an integer from 0 to 2**63-1"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(tmp_path, argv, message):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "q.txt").write_text("hello\n")
    (tmp_path / "bad.jsonl").write_text('{"question": "ok"}\n{oops\n')
    # The same id twice for the same question is a duplicate; for two questions, a mistake naming both lines.
    (tmp_path / "clash.jsonl").write_text('{"id": "q1", "question": "2+2?"}\n{"id": "q1", "question": "2+2?"}\n'
                                          '{"id": "q1", "question": "3+3?"}\n')
    names = {"EMPTY": tmp_path / "empty.txt", "Q": tmp_path / "q.txt", "OUT": tmp_path / "out.jsonl",
             "BADJSONL": tmp_path / "bad.jsonl", "CLASH": tmp_path / "clash.jsonl"}
    done = run_cli("gen", *[str(names.get(a, a)) for a in argv])
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
