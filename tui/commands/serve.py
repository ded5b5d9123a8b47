"""`beamtui serve`: the same dashboard in a browser, through textual-serve.

textual-serve starts one dashboard process per browser tab, from a command line; ours is `beamtui` with the
flags `serve` was given (API keys stay in the environment, never on that line). Everything is checked here
first, so bad input fails in the shell, not in a browser tab.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import socket
import sys
from pathlib import Path

from engine.errors import ConfigError
from tui.options import BY_DEST, add_command, add_flags, merged_values, settings_from

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_serve_parser(commands) -> None:
    serve = add_command(
        commands, "serve", "the dashboard in a browser (textual-serve)",
        "Each browser tab runs the same dashboard as `beamtui`, with the same flags.",
        ["beamtui serve", "beamtui serve --port 8080 --strategy smc"])
    add_flags(serve, "serve")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; anyone who can reach it can drive the search)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def dashboard_command(args: argparse.Namespace) -> str:
    """The command line each browser tab runs: `beamtui` with the dashboard flags given to serve."""
    argv = [sys.executable, "-m", "tui.cli"]
    for dest, value in vars(args).items():
        flag = BY_DEST.get(dest)
        if flag is None:
            continue  # host, port, command
        if dest == "config":
            value = str(Path(value).resolve())
        for one in value if isinstance(value, list) else [value]:
            argv += [flag.name] if flag.type is None else [flag.name, str(one)]
    return shlex.join(argv)


def exposure_warning(host: str, port: int) -> str | None:
    if host in LOOPBACK:
        return None
    return (f"beamtui: warning: serving on {host}: anyone who can reach port {port} can drive the search and spend "
            f"its backend")


def check_port_free(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_command(args: argparse.Namespace) -> int:
    from textual_serve.server import Server

    from tui.app import BeamtuiApp, check_backend
    from tui.keymap import check_keymap

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1 to 65535, got {args.port}")
    values = merged_values(args)
    _, backend = settings_from(values)  # checked here, used by each tab's own dashboard
    check_keymap(values.get("keymap") or {}, BeamtuiApp.binding_scopes())
    if backend.backend != "local":
        asyncio.run(check_backend(backend))
    check_port_free(args.host, args.port)
    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    Server(dashboard_command(args), host=args.host, port=args.port, title="beamtui").serve()
    return 0
