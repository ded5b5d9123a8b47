"""`beamtui`: the dashboard by default, plus headless `run`, `bench`, `gen` and `eval` for scripts."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

from engine.errors import BeamtuiError, ConfigError, RunFailed
from tui.options import (
    OneLineParser,
    add_command,
    add_flags,
    command_flags,
    fail,
    join_repeated,
    refuse_misplaced,
    unrecognized,
)

EXIT_INTERRUPTED = 130
COMMANDS = ("run", "bench", "gen", "eval", "serve", "proxy", "watch")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = OneLineParser(
        prog="beamtui",
        description="Run, watch and steer inference-time search over a language model.",
        epilog="With no command, beamtui opens the live dashboard on the embedded model.",
    )
    add_flags(parser, "tui")
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser, metavar="{" + ",".join(COMMANDS) + "}")

    run = add_command(
        commands, "run", "run one search and print the answer",
        "Live progress goes to stderr; the answer, the final candidates and the timings to stdout (one JSON object "
        "with --json). The prompt comes from --prompt or the config file.",
        ["beamtui run --prompt 'What is 17 * 23?' --strategy smc --particles 8",
         "beamtui run --config assets/beamtui.example.toml --json"])
    add_flags(run, "run")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    bench = add_command(
        commands, "bench", "time the same search sequentially and in parallel",
        "Each width runs twice with the same seed, one request at a time and then concurrently, and the table "
        "gives both measured times, the speedup and whether the answers agree.",
        ["beamtui bench --strategy beam --widths 1,2,4 --max-tokens 32",
         "beamtui bench --strategy smc --widths 4,8 --backend openai --base-url http://127.0.0.1:8000/v1 "
         "--model MODEL"])
    add_flags(bench, "bench")
    bench.add_argument("--widths", default="1,2,4,8",
                       help="comma-separated widths of the strategy: beam width, chains, particles or N "
                            "(default 1,2,4,8)")
    bench.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of a table')

    from tui.commands.gen import add_gen_parser

    add_gen_parser(commands)
    from tui.commands.eval import add_eval_parser

    add_eval_parser(commands)
    from tui.commands.serve import add_serve_parser

    add_serve_parser(commands)
    from tui.commands.proxy import add_proxy_parser, add_watch_parser

    add_proxy_parser(commands)
    add_watch_parser(commands)
    return parser, dict(commands.choices)


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine with one policy for errors: 2 for bad input, 1 for a failed run, 130 for Ctrl+C."""
    try:
        return asyncio.run(main())
    except ConfigError as exc:
        fail(str(exc), 2)
    except (RunFailed, BeamtuiError) as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        print("beamtui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `beamtui run ... | head`: the reader left, which is not our error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def entry() -> NoReturn:
    """The `beamtui` command: `main`, then out at once. By then every file a command writes is closed and its
    output flushed; skipping the interpreter's teardown (freeing the openai SDK's thousands of classes, the
    tokenizer, the threads' pools) took ~0.2 s off every headless run on 2 cores."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (`| head`), or a closed stream
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    args = join_repeated(args)
    command = args.command or "tui"
    if extras:
        fail(unrecognized(extras, command), 2)
    try:
        refuse_misplaced(vars(args), command, command_flags(subparsers.get(command, parser)) | {"command"})
    except ConfigError as exc:
        fail(str(exc), 2)
    if command == "run":
        from tui.commands.run import run_command

        return run_async(lambda: run_command(args))
    if command == "bench":
        from tui.commands.bench import bench_command

        return run_async(lambda: bench_command(args))
    if command == "gen":
        from tui.commands.gen import gen_command

        return run_async(lambda: gen_command(args))
    if command == "eval":
        from tui.commands.eval import eval_command, eval_tui_command

        if args.tui:
            try:
                return eval_tui_command(args)
            except ConfigError as exc:
                fail(str(exc), 2)
        return run_async(lambda: eval_command(args))
    if command == "serve":
        from tui.commands.serve import serve_command

        try:
            return serve_command(args)
        except ConfigError as exc:
            fail(str(exc), 2)
    if command in ("proxy", "watch"):
        from tui.commands.proxy import proxy_command, watch_command

        try:
            return (proxy_command if command == "proxy" else watch_command)(args)
        except ConfigError as exc:
            fail(str(exc), 2)
    from tui.app import launch

    return launch(args)


if __name__ == "__main__":
    entry()
