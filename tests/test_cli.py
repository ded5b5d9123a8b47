"""`beamtui run` and `beamtui bench` as a user runs them: real processes, the real model, loopback HTTP; and every
shared flag, before or after the subcommand."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError
from engine.settings import settings_from
from tests.conftest import run_cli
from tests.fault_server import FaultConfig
from tui.cli import build_parser
from tui.options import FLAGS, merged_values, read_config, refuse_misplaced

SMALL = ["--beam-width", "2", "--n-per-beam", "2", "--block-tokens", "6", "--max-tokens", "12", "--seed", "1"]


def synthetic(server) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", "synthetic", "--tokenizer", "embedded"]


def test_run_json_on_the_embedded_model():
    done = run_cli("run", "--prompt", "Name a color.", *SMALL, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"answer", "candidates", "timing", "usage", "stats", "strategy", "logprobs"}
    assert set(out["answer"]) >= {"text", "target", "score", "tokens"} and out["answer"]["text"]
    assert out["answer"] == out["candidates"][0]
    assert set(out["timing"]) >= {"wall_s", "sum_request_s", "requests", "rounds"}
    assert out["timing"]["requests"] == out["usage"]["requests"] > 0
    assert out["usage"]["completion_tokens"] >= out["answer"]["tokens"]
    assert out["seed"] == 1 and out["strategy"] == "beam" and out["logprobs"] == "exact"


def test_run_prints_the_answer_and_a_table_of_candidates():
    done = run_cli("run", "--prompt", "Name a color.", *SMALL)
    assert done.returncode == 0, done.stderr
    assert "answer · beam" in done.stdout and "final candidates" in done.stdout and "seed 1" in done.stdout
    assert "latency overlap" in done.stdout and "one at a time" not in done.stdout


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.05)], indirect=True)
def test_bench_json_rows(fault_server):
    done = run_cli("bench", *synthetic(fault_server), "--widths", "1,4", "--n-per-beam", "2",
                   "--block-tokens", "4", "--max-tokens", "8", "--max-concurrent", "8", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert [row["width"] for row in rows] == [1, 4]
    for row in rows:
        assert set(row) >= {"width", "requests", "seq_s", "par_s", "speedup", "ideal", "efficiency", "tokens"}
        assert row["speedup"] == pytest.approx(row["seq_s"] / row["par_s"], rel=1e-3)
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal"], rel=1e-3)
        assert row["same_answer"] is True
    assert rows[0]["ideal"] == 1.0 and rows[1]["ideal"] == 4.0
    assert rows[1]["speedup"] > 2.5  # four requests per block, 50 ms each, sent together
    assert fault_server.stats.peak_in_flight <= 8


@pytest.mark.parametrize("fault_server", [FaultConfig(latency=0.01)], indirect=True)
def test_a_piped_bench_table_keeps_its_columns(fault_server):
    done = run_cli("bench", *synthetic(fault_server), "--widths", "1,2", "--n-per-beam", "1", "--block-tokens", "4",
                   "--max-tokens", "4")
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    header = next(line for line in done.stdout.splitlines() if "seq_s" in line)
    assert header.split("┃")[1:-1] == [f" {name} " for name in ("width", "requests", "tokens", "seq_s", "par_s",
                                                                "speedup", "ideal", "efficiency", "same answer")]
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[-2].strip() for row in rows] == ["yes", "yes"]


def test_bench_labels_simulated_latency():
    done = run_cli("bench", "--widths", "2", "--n-per-beam", "1", "--block-tokens", "4", "--max-tokens", "4",
                   "--latency", "0.2", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert "0.2s per request (simulated)" in " ".join(done.stdout.split())
    assert "ideal: the speedup if a round's requests overlapped" in " ".join(done.stdout.split())


def test_bench_on_the_compute_bound_local_model_says_why_it_stays_under_the_ideal():
    done = run_cli("bench", "--widths", "2", "--n-per-beam", "1", "--block-tokens", "4", "--max-tokens", "4",
                   "--seed", "1")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "ideal: the speedup if a round's requests overlapped without slowing each other" in text
    assert "requests in parallel share them" in text


BAD_INPUT = [
    (["run", "--prompt", "x", "--beam-width", "0"], "beam-width must be an integer >= 1"),
    (["run", "--prompt", "x", "--strategy", "mcmc", "--tries", "0"], "tries must be an integer >= 1"),
    (["run", "--prompt", "x", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
      "--flash-attn", "on"], "--flash-attn is for the local decoder"),
    (["run", "--prompt", "x", "--flash-attn", "fast"], "invalid choice: 'fast'"),
    (["run", "--prompt", "x", "--n-per-beam", "-2"], "n-per-beam must be an integer >= 1"),
    (["run", "--prompt", "x", "--block-tokens", "0"], "block-tokens must be an integer >= 1"),
    (["run", "--prompt", "x", "--max-tokens", "0"], "max-tokens must be an integer >= 1"),
    (["run", "--prompt", "x", "--temperature", "-0.5"], "temperature must be >= 0"),
    (["run", "--prompt", "x", "--block-tokens", "64", "--max-tokens", "32"], "cannot be larger than max-tokens"),
    (["run", "--prompt", "x", "--backend", "vllm"], "invalid choice: 'vllm'"),
    (["run", "--prompt", "x", "--strategy", "annealing"], "invalid choice: 'annealing'"),
    (["run", "--prompt", "x", "--beam-width", "two"], "invalid int value"),
    (["run", "--prompt", "x", "--backend", "openai", "--model", "m"], "needs --base-url"),
    (["run", "--prompt", "x", "--backend", "openai", "--base-url", "localhost:8000", "--model", "m"],
     "malformed base URL"),
    (["run", "--prompt", "x", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
      "--tokenizer", "embedded", "--max-retries", "0"], "cannot reach http://127.0.0.1:9/v1"),
    (["run", "--prompt", "x", "--max-concurrent", "0"], "max-concurrent must be an integer >= 1"),
    (["run", "--prompt", "x", "--model-path", "/nonexistent/model.gguf"], "model file not found"),
    (["run", "--prompt", "x", "--weights", "fast"], "invalid choice: 'fast'"),
    (["run", "--prompt", "   "], "prompt is empty"),
    (["run"], "beamtui run needs a prompt: --prompt TEXT, or prompt = \"...\" in the --config file"),
    (["run", "--prompt", "x", "--strategy", "mcmc", "--beam-width", "3"],
     "--beam-width is a setting of --strategy beam, not mcmc"),
    (["run", "--prompt", "x", "--strategy", "smc", "--particles", "0"], "particles must be an integer >= 1"),
    (["run", "--prompt", "x", "--strategy", "smc", "--ess-threshold", "1.5"], "ess-threshold must be in (0, 1]"),
    (["run", "--prompt", "x", "--strategy", "mcmc", "--temperature", "0"], "mcmc needs a proposal temperature > 0"),
    (["run", "--prompt", "x", "--model", "m"], "--model and --tokenizer are for remote backends"),
    (["run", "--prompt", "x", "--threads", "2", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
      "--model", "m"], "--threads sets the local model's CPU threads"),
    (["--json", "run", "--prompt", "x"], "unrecognized arguments: --json"),
    (["--prompt", "x", "gen", "--questions", "q.txt", "--out", "o.jsonl"], "--prompt does not apply to `beamtui gen`"),
    (["--beam-width", "3", "gen", "--questions", "q.txt", "--out", "o.jsonl"],
     "--beam-width does not apply to `beamtui gen`"),
    (["gen", "--questions", "assets/arithmetic.jsonl", "--out", "/no-such-dir/teacher.jsonl"],
     "cannot write /no-such-dir/teacher.jsonl: no directory /no-such-dir"),
    (["eval", "--problems", "assets/arithmetic.jsonl", "--strategies", "greedy,beam:0x2"],
     "strategy spec 'beam:0x2': beam-width must be an integer >= 1, got 0"),
    (["bench", "--widths", "1,x"], "--widths must be comma-separated integers"),
    (["bench", "--widths", "0"], "--widths must be integers >= 1"),
    (["bench", "--strategy", "greedy", "--widths", "1,2"], "--strategy greedy has no width"),
    (["bench", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--latency", "1"],
     "--latency simulates network delay on the local backend only"),
    # Limits, refused before the work: sizes past their stated bounds, answers past what the backend holds.
    (["run", "--prompt", "x", "--strategy", "smc", "--particles", "100000", "--max-tokens", "8"],
     "particles must be at most 1,024, got 100,000"),
    (["run", "--prompt", "x", "--beam-width", "100", "--n-per-beam", "64"],
     "beam-width x n-per-beam must be at most 4,096 candidates a block"),
    (["run", "--prompt", "x", "--strategy", "mcmc", "--tries", "99"], "tries must be at most 16"),
    (["run", "--prompt", "x", "--max-tokens", "100000"],
     "--max-tokens 100,000 does not fit in the local model's 2,048 tokens per sequence"),
    (["gen", "--questions", "assets/arithmetic.jsonl", "--out", "/tmp/never.jsonl", "--max-tokens", "4096"],
     "does not fit in the local model's 2,048 tokens per sequence"),
    (["run", "--prompt", "x" * 20000], "the prompt alone is"),
    (["run", "--prompt", "Name a colour.", "--max-tokens", "2040", "--block-tokens", "32"],
     "exceed the local model's 2,048 tokens per sequence; use --max-tokens"),
    (["run", "--prompt", "x", "--seed", "-5"], "seed must be an integer from 0 to 2**63-1, got -5"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_exit_2(argv, message):
    done = run_cli(*argv)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("fault_server", [FaultConfig(rate_no_logprobs=1.0)], indirect=True)
def test_an_endpoint_without_logprobs_exits_2(fault_server):
    done = run_cli("run", "--prompt", "x", *synthetic(fault_server))
    assert done.returncode == 2
    assert "returned no logprobs" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_weights_flag_reaches_the_local_backend():
    from engine.backends.factory import create_sampler
    from engine.backends.local.layout import PLAIN, REPACKED_ONE_TOKEN

    _, plain = settings_from({"weights": "plain"})
    _, one_token = settings_from({"weights": "repacked-one-token"})
    _, auto = settings_from({})
    assert create_sampler(plain).layout == PLAIN
    assert create_sampler(one_token).layout == REPACKED_ONE_TOKEN
    assert create_sampler(auto).layout is None  # probed when the model loads
    with pytest.raises(ConfigError, match="weights must be one of auto, plain"):
        settings_from({"weights": "fast"})


# Every shared flag with a valid value other than its default, for the two-orders test.
SAMPLE_VALUES = {
    "prompt": "hi", "system_prompt": "be brief", "strategy": "mcmc", "block_tokens": "8", "max_tokens": "16",
    "alpha": "3", "temperature": "0.5", "seed": "7", "mode": "sequential", "beam_width": "3", "n_per_beam": "2",
    "length_penalty": "0.5", "chains": "3", "mcmc_steps": "2", "particles": "5", "ess_threshold": "0.3",
    "output": "best", "best_of": "3", "votes": "5", "backend": "openai", "base_url": "http://127.0.0.1:9/v1",
    "endpoint_max_concurrent": "4", "tinker_clients": "2",
    "model": "m", "model_path": "x.gguf", "tokenizer": "embedded", "api": "chat", "max_concurrent": "7",
    "timeout": "9", "max_retries": "2", "latency": "0.5", "threads": "1", "weights": "plain", "tries": "4",
    "flash_attn": "on", "cut": "entropy", "top_k": "4", "rollouts": "2", "horizon": "9",
}


def parse(argv: list[str]) -> tuple[dict, str]:
    parser, subparsers = build_parser()
    from tui.options import command_flags, join_repeated

    args = join_repeated(parser.parse_args(argv))
    command = args.command or "tui"

    refuse_misplaced(vars(args), command, command_flags(subparsers.get(command, parser)) | {"command"})
    return {k: v for k, v in vars(args).items() if k != "command"}, command


def test_every_flag_is_listed_with_a_sample_value():
    assert set(SAMPLE_VALUES) == {flag.dest for flag in FLAGS if flag.dest != "config"}


@pytest.mark.parametrize("command", ["run", "bench", "gen"])
def test_every_shared_flag_means_the_same_before_and_after_the_subcommand(command):
    """`beamtui --flag v run` and `beamtui run --flag v` parse to the same value, or the first is refused."""
    required = {"run": ["--prompt", "p"], "bench": [], "gen": ["--questions", "q.txt", "--out", "o.jsonl"]}[command]
    for flag in FLAGS:
        if flag.dest == "config" or flag.dest == "prompt" and command == "run":
            continue
        given = [flag.name, SAMPLE_VALUES[flag.dest]]
        if command not in flag.commands:
            with pytest.raises(ConfigError, match=f"{flag.name} does not apply to `beamtui {command}`"):
                parse([*given, command, *required])
            continue
        after, _ = parse([command, *required, *given])
        before, _ = parse([*given, command, *required])
        assert before == after, flag.name
        expected = (flag.type or str)(SAMPLE_VALUES[flag.dest])
        assert ([expected] if flag.many else expected) == before[flag.dest], flag.name


def test_a_repeated_flag_given_on_both_sides_of_the_subcommand_keeps_every_value():
    values, _ = parse(["--base-url", "http://a/v1", "run", "--prompt", "p", "--base-url", "http://b/v1"])
    assert values["base_url"] == ["http://a/v1", "http://b/v1"]


def test_a_flag_before_run_reaches_the_search():
    values, _ = parse(["--beam-width", "3", "run", "--prompt", "hi"])
    search, _ = settings_from(values)
    assert search.beam_width == 3
    values, _ = parse(["--beam-width", "3", "run", "--prompt", "hi", "--beam-width", "5"])
    assert settings_from(values)[0].beam_width == 5  # given twice: the later one, as argparse always does


def test_config_before_or_after_the_subcommand_is_read(tmp_path):
    config = tmp_path / "beamtui.toml"
    config.write_text('beam-width = 3\nstrategy = "beam"\n')
    parser, _ = build_parser()
    for argv in (["--config", str(config), "run", "--prompt", "hi"],
                 ["run", "--prompt", "hi", "--config", str(config)]):
        search, _ = settings_from(merged_values(parser.parse_args(argv)))
        assert search.beam_width == 3
    search, _ = settings_from(merged_values(parser.parse_args(["--config", str(config), "run", "--prompt", "hi",
                                                                 "--beam-width", "6"])))
    assert search.beam_width == 6  # flags override the file


def test_root_flags_reach_run_end_to_end():
    done = run_cli("--beam-width", "3", "run", "--prompt", "Name a color.", "--n-per-beam", "1",
                   "--block-tokens", "4", "--max-tokens", "4", "--seed", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["candidates"]) == 3


EXAMPLE_CONFIG = "assets/beamtui.example.toml"
FAST = ["--max-tokens", "4", "--block-tokens", "4", "--beam-width", "1", "--n-per-beam", "1"]


def test_run_takes_its_prompt_from_the_config_alone():
    done = run_cli("run", "--config", EXAMPLE_CONFIG, *FAST, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"]["tokens"] >= 1


def test_every_subcommand_reads_the_shipped_example_config(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("What is 2 plus 2?\n")
    runs = {
        "bench": ["bench", "--config", EXAMPLE_CONFIG, "--widths", "1", *FAST, "--json"],
        "gen": ["gen", "--config", EXAMPLE_CONFIG, "--questions", str(questions), "--out",
                str(tmp_path / "teacher.jsonl"), "--max-tokens", "4", "--quiet"],
        "eval": ["eval", "--config", EXAMPLE_CONFIG, "--problems", "assets/arithmetic.jsonl", "--limit", "1",
                 "--strategies", "greedy", "--max-tokens", "4", "--block-tokens", "4",
                 "--out", str(tmp_path / "eval.jsonl"), "--quiet"],
    }
    for name, argv in runs.items():
        done = run_cli(*argv)
        assert done.returncode == 0, (name, done.stderr)


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--max-tokens", "4"], 'beamtui run needs a prompt: --prompt TEXT, or prompt = "..." in the --config file'),
    (["bench", "--mode", "sequential"], "--mode does not apply to `beamtui bench` (bench runs both modes and times "
                                        "each)"),
    (["eval", "--problems", "assets/arithmetic.jsonl", "--strategy", "beam"],
     "--strategy does not apply to `beamtui eval` (eval compares several: --strategies greedy,beam:2x2,smc:8)"),
    (["run", "--prompt", "hi", "--mod", "m"], "unrecognized arguments: --mod m"),  # never read as --model
])
def test_misplaced_and_missing_input_gets_one_line_that_says_what_to_do(argv, message):
    done = run_cli(*argv)
    assert done.returncode == 2 and done.stderr == f"beamtui: error: {message}\n"


def test_a_keymap_typo_is_refused_by_run_as_by_the_dashboard(tmp_path):
    config = tmp_path / "keys.toml"
    config.write_text('[keymap]\nwidth_upp = "ctrl+up"\n')
    done = run_cli("run", "--config", str(config), "--prompt", "hi", *FAST)
    assert done.returncode == 2 and "unknown binding id 'width_upp'" in done.stderr


@pytest.mark.parametrize("command", ["run", "bench", "gen", "eval", "serve"])
def test_help_shows_true_defaults_examples_and_no_internal_names(command):
    done = run_cli(command, "--help")
    assert done.returncode == 0
    assert "examples:\n  beamtui " + command in done.stdout
    assert "_AFTER_COMMAND" not in done.stdout and "default 128; gen" not in done.stdout
    expected = {"eval": "(default: 32)", "gen": "(default: 256)"}.get(command, "(default: 128)")
    assert f"tokens per answer at most {expected}" in " ".join(done.stdout.split())


def test_a_config_value_of_the_wrong_type_is_named_in_words(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('beam-width = "four"\n')
    with pytest.raises(ConfigError, match="setting 'beam-width' in .* must be an integer, got 'four'"):
        read_config(str(config))


def test_a_piped_run_table_keeps_its_columns():
    done = run_cli("run", "--prompt", "Name a colour.", "--strategy", "best-of-n", "--best-of", "2", "--max-tokens",
                   "4", "--seed", "1")
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "target" in line and "mean logp" in line)
    assert "text (tail)" in header and len(header) > 80  # not cut to an assumed 80 columns
