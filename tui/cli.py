"""`beamtui`: the dashboard by default, plus headless `run`, `bench` and `gen` for scripts."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from engine.errors import BeamtuiError, ConfigError, RunFailed
from tui.options import OneLineParser, add_backend_flags, add_search_flags, fail

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="beamtui",
        description="Watch and steer block-wise power beam search over a language model.",
        epilog="With no command, beamtui opens the live dashboard on the embedded model.",
    )
    add_search_flags(parser, prompt_required=False)
    add_backend_flags(parser)
    parser.add_argument("--config", help="a TOML file with the same settings as the flags")
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser, metavar="{run,bench,gen}")

    run = commands.add_parser("run", help="run one search and print the best answer")
    add_search_flags(run, prompt_required=True)
    add_backend_flags(run)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    bench = commands.add_parser("bench", help="time the same search sequentially and in parallel")
    add_search_flags(bench, prompt_required=False)
    add_backend_flags(bench)
    bench.add_argument("--beam-widths", default="1,2,4,8", help="comma-separated widths (default 1,2,4,8)")
    bench.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of a table')

    from tui.commands.gen import add_gen_parser

    add_gen_parser(commands)
    return parser


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from tui.commands.run import run_command

        return run_async(lambda: run_command(args))
    if args.command == "bench":
        from tui.commands.bench import bench_command

        return run_async(lambda: bench_command(args))
    if args.command == "gen":
        from tui.commands.gen import gen_command

        return run_async(lambda: gen_command(args))
    from tui.app import launch

    return launch(args)


if __name__ == "__main__":
    raise SystemExit(main())
