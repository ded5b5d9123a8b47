"""`beamtui gen`: teacher answers for prompt distillation, streamed to resumable JSONL with live progress."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.errors import ConfigError
from engine.gen.generator import (
    Generator,
    GenProgress,
    GenSettings,
    check_questions,
    compare_modes,
    gen_settings,
)
from engine.jsonl import check_writable
from engine.request_layer import RequestLayer
from engine.scoring import speedup
from engine.settings import BackendSettings, backend_settings
from tui.commands import check_dashboard_keymap, open_backend
from tui.options import add_command, add_flags, merged_values


def add_gen_parser(commands) -> None:
    gen = add_command(
        commands, "gen", "generate teacher data (prompt distillation) to resumable JSONL",
        "Each question is answered by the teacher (the system prompt plus the question); each output line holds "
        "the question and the answer only, appended and flushed as it arrives. A rerun resumes the file.",
        ["beamtui gen --questions questions.txt --out teacher.jsonl --system-prompt 'Answer briefly.'",
         "beamtui gen --questions q.jsonl --out teacher.jsonl --num-samples 4 --backend openai "
         "--base-url http://127.0.0.1:8000/v1 --model MODEL"])
    gen.add_argument("--questions", required=True, help=".txt (one per line) or .jsonl ({question|prompt, id?})")
    gen.add_argument("--out", help="output JSONL; a rerun resumes it (not needed with --compare)")
    gen.add_argument("--system-prompt-file", help="read the teacher's instructions from a file")
    add_flags(gen, "gen")
    gen.add_argument("--num-samples", type=int, default=1, help="answers per question (default 1)")
    gen.add_argument("--parse-regex", help="keep group 1 as the answer, e.g. 'Final Answer: (\\w+)'")
    gen.add_argument("--limit", type=int, help="only the first N questions")
    gen.add_argument("--shard", metavar="I/N",
                     help="only the questions whose id hashes to shard I of N (I from 0); "
                          "writes OUT.shard-I-of-N.jsonl")
    gen.add_argument("--quiet", action="store_true", help="no progress bar, just the summary")
    gen.add_argument("--compare", type=int, metavar="N",
                     help="time the first N questions sequentially and then in parallel; write nothing")


async def gen_command(args: argparse.Namespace) -> int:
    if args.compare is None and not args.out:
        raise ConfigError("gen needs --out (or --compare N to time sequential against concurrent)")
    if args.compare is not None and args.compare < 1:
        raise ConfigError(f"--compare must be >= 1, got {args.compare}")
    if args.compare is not None and args.shard is not None:
        raise ConfigError("--compare times the first N questions of the file; it takes no --shard")
    values = merged_values(args)
    check_dashboard_keymap(values)
    backend = backend_settings(values)
    settings = gen_settings(values, questions=args.questions, out=args.out or "unused.jsonl",
                            system_prompt_file=args.system_prompt_file, num_samples=args.num_samples,
                            parse_regex=args.parse_regex, limit=args.limit, shard=args.shard)
    total = check_questions(settings)
    if args.compare is None:
        check_writable(settings.out)
        check_writable(settings.errors_path)
    console = Console(stderr=True)
    sampler = await open_backend(backend)
    try:
        if args.compare is not None:
            return await compare(settings, backend, sampler, min(args.compare, total), console)
        layer = RequestLayer.for_backend(sampler, backend, seed=0)
        progress = await run_with_progress(Generator(settings, backend, sampler, layer), total, console,
                                           quiet=args.quiet)
    finally:
        await sampler.aclose()
    print_summary(progress, layer, settings, console)
    return 1 if progress.failed else 0


async def run_with_progress(generator: Generator, total: int, console: Console, *, quiet: bool) -> GenProgress:
    if quiet:
        return await generator.run(total)
    layer = generator.layer
    columns = (
        TextColumn("gen"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
    )
    with Progress(*columns, console=console, refresh_per_second=8) as bar:
        # The file was counted when it was checked: the bar knows its length before the first answer lands.
        task = bar.add_task("gen", total=total * generator.settings.num_samples, rate="", counts="")

        def show(progress: GenProgress) -> None:
            bar.update(
                task, total=progress.total, completed=progress.done + progress.failed,
                rate=f"{progress.examples_per_s:.1f} ex/s",
                counts=f"retries {layer.stats.retries} · failures {progress.failed}"
                       + (f" · {progress.skipped} already done" if progress.skipped else ""),
            )

        generator.on_progress = show
        progress = await generator.run(total)
        show(progress)
    return progress


def print_summary(progress: GenProgress, layer: RequestLayer, settings: GenSettings, console: Console) -> None:
    per_example = progress.elapsed_s / progress.done if progress.done else 0.0
    console.print(  # soft wrap: scripts parse this line
        f"{progress.done} examples in {progress.elapsed_s:.1f}s · {progress.examples_per_s:.1f} examples/s · "
        f"{per_example:.3f} s/example · retries {layer.stats.retries} · failures {progress.failed}"
        + (f" · {progress.skipped} already done" if progress.skipped else "")
        + (f" · {progress.duplicates} duplicate ids skipped" if progress.duplicates else "")
        + f" · at most {layer.stats.peak_in_flight} in flight",
        soft_wrap=True,
    )
    for url, counts in layer.stats.endpoints.items():  # with several endpoints: how each one did
        mean = counts["sum_latency_s"] / counts["requests"] if counts["requests"] else 0.0
        console.print(f"  {url}: {counts['requests']} requests, mean {mean:.2f}s, "
                      f"{counts['failed_attempts']} failed attempts", soft_wrap=True)
    console.print(f"output: {settings.out}" + (f" · failures in {settings.errors_path}" if progress.failed else ""),
                  soft_wrap=True)


async def compare(settings: GenSettings, backend: BackendSettings, sampler, count: int, console: Console) -> int:
    """The seed's before and after: the same questions one at a time, then `--max-concurrent` at once."""

    def show(mode: str, progress: GenProgress | None) -> None:
        if progress is None:
            console.print(f"{mode}: {count} questions…", soft_wrap=True)
            return
        console.print(f"  {progress.done} examples in {progress.elapsed_s:.2f}s "
                      f"({progress.elapsed_s / max(progress.done, 1):.3f} s/example, failures {progress.failed})",
                      soft_wrap=True)

    times = await compare_modes(settings, backend, sampler, count, show)
    print(f"sequential {times['sequential']:.2f}s · parallel {times['parallel']:.2f}s "
          f"(max_concurrent {backend.max_concurrent}) · speedup "
          f"{speedup(times['sequential'], times['parallel']) or 0.0:.1f}x")
    return 0
