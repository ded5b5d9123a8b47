"""`beamtui serve`: the same dashboard in a browser, through textual-serve.

textual-serve starts one dashboard process per browser tab, from a command line; ours is `beamtui` with the
flags `serve` was given (API keys stay in the environment, never on that line). Everything is checked here
first, so bad input fails in the shell, not in a browser tab.

Beyond loopback the page and its websocket need an access token, as Jupyter's do: a random one printed once in
the URL, or `--token`. The page sets it as a cookie, so the websocket carries it too. Pages and websockets
point at the host the browser asked for, not at the address bound (0.0.0.0 is no address a browser can reach),
and at most `--max-tabs` dashboards run at once (each is a process with its own model).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
from pathlib import Path

from engine.backends.factory import check_backend
from engine.errors import ConfigError
from engine.settings import settings_from
from tui.options import BY_DEST, SERVED_ENV, add_command, add_flags, merged_values

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
    serve.add_argument("--token", help="the access token the page asks for (default: a random one beyond loopback, "
                                       "none on loopback)")
    serve.add_argument("--no-token", action="store_true",
                       help="serve beyond loopback without a token: anyone who reaches the port drives the search")
    serve.add_argument("--max-tabs", type=int, default=4,
                       help="dashboards at once, each a process with its own model (default 4)")


def dashboard_command(args: argparse.Namespace) -> list[str]:
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
    return argv


def access_token(host: str, token: str | None, no_token: bool) -> str | None:
    """The token every page and websocket must carry: given, or made up beyond loopback unless refused."""
    if token is not None and no_token:
        raise ConfigError("give --token or --no-token, not both")
    if token is not None:
        if len(token) < 8:
            raise ConfigError("--token must be at least 8 characters")
        return token
    return None if no_token or host in LOOPBACK else secrets.token_urlsafe(24)


def exposure_warning(host: str, port: int, token: str | None) -> str | None:
    if host in LOOPBACK or token is not None:
        return None
    return (f"beamtui: warning: serving on {host} with --no-token: anyone who can reach port {port} can drive the "
            f"search, spend its backend's budget and read its prompts")


def check_port_free(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_command(args: argparse.Namespace) -> int:
    from tui.commands import check_dashboard_keymap

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1 to 65535, got {args.port}")
    if args.max_tabs < 1:
        raise ConfigError(f"--max-tabs must be >= 1, got {args.max_tabs}")
    token = access_token(args.host, args.token, args.no_token)
    values = merged_values(args)
    _, backend = settings_from(values)  # checked here, used by each tab's own dashboard
    check_dashboard_keymap(values)
    if backend.backend != "local":
        asyncio.run(check_backend(backend))
    check_port_free(args.host, args.port)
    warning = exposure_warning(args.host, args.port, token)
    if warning:
        print(warning, file=sys.stderr)
    os.environ[SERVED_ENV] = str(os.getpid())  # the dashboards it starts inherit it: who they must die with
    from tui.commands.tab_server import TabServer

    TabServer(dashboard_command(args), host=args.host, port=args.port, token=token, max_tabs=args.max_tabs,
              banner=banner(args.host, args.port, token)).serve()
    return 0


def banner(host: str, port: int, token: str | None) -> str:
    """The one address that opens the dashboard, with its token: printed once, when the server listens."""
    shown = "HOST" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    query = f"/?token={token}" if token is not None else "/"
    return f"beamtui serve: open http://{shown}:{port}{query} · Ctrl+C stops the server and every dashboard"
