"""`beamtui proxy`: the search behind an OpenAI-compatible endpoint any client can call, and `beamtui watch`: its
searches live, from wherever the proxy can be reached.

Loopback by default. Beyond loopback every route needs a bearer token (what OpenAI clients send as their
`api_key`): `--api-key`, or `BEAMTUI_PROXY_API_KEY`, or a random one printed once. The upstream's own key stays
in the environment and never reaches a client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from typing import TYPE_CHECKING

from engine.errors import ConfigError
from engine.registry import strategy_names
from engine.settings import settings_from
from tui.commands import check_dashboard_keymap
from tui.commands.serve import LOOPBACK, check_port_free
from tui.options import add_command, add_flags, merged_values

if TYPE_CHECKING:  # the proxy's modules import the openai SDK's types (0.7 s): only `proxy` itself loads them
    from engine.proxy.service import ProxyService

KEY_ENV = "BEAMTUI_PROXY_API_KEY"


def add_proxy_parser(commands) -> None:
    proxy = add_command(
        commands, "proxy", "serve the search behind an OpenAI-compatible endpoint, for any client",
        "POST /v1/chat/completions and /v1/completions run a search per request: the `model` field is a spec "
        "(smc:8, mcmc:2x5x4, greedy), optionally followed by / and the upstream model; settings come in a `beamtui` "
        "object. The flags are every request's defaults; --max-tokens is also the most a request may ask for.",
        ["beamtui proxy", "beamtui proxy --backend openai --base-url http://127.0.0.1:8000/v1 --model MODEL "
                          "--strategy smc --particles 8 --tui"])
    add_flags(proxy, "proxy")
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    proxy.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    proxy.add_argument("--api-key", help=f"the bearer token every request must carry (or {KEY_ENV}; default: a "
                                         "random one beyond loopback, none on loopback)")
    proxy.add_argument("--allow", help="comma-separated strategies served (default: every one)")
    proxy.add_argument("--max-width", type=int, default=64,
                       help="beams, chains, particles, N, continuations per beam or sps rollouts a request may ask "
                            "for (default 64)")
    proxy.add_argument("--max-n", type=int, default=8, help="searches a request may ask for with n (default 8)")
    proxy.add_argument("--max-queue", type=int, default=256,
                       help="requests in hand at once; past it, 429 with Retry-After (default 256)")
    proxy.add_argument("--tui", action="store_true", help="run under a dashboard of the requests it serves")


def add_watch_parser(commands) -> None:
    watch = add_command(
        commands, "watch", "watch a running beamtui proxy's searches live",
        "Opens the proxy's dashboard on its event stream (GET /beamtui/v1/events).",
        ["beamtui watch http://127.0.0.1:8100", "beamtui watch http://gpu-box:8100 --api-key KEY"])
    watch.add_argument("url", help="the proxy's address, e.g. http://127.0.0.1:8100")
    watch.add_argument("--api-key", help=f"the proxy's bearer token (or {KEY_ENV})")


def proxy_plan(args: argparse.Namespace) -> tuple[ProxyService, str | None]:
    """The service and its token from the flags, every check that needs no backend done."""
    from engine.proxy.requests import ProxyLimits
    from engine.proxy.service import ProxyService

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1 to 65535, got {args.port}")
    for name in ("max_width", "max_n", "max_queue"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    values = merged_values(args)
    check_dashboard_keymap(values)
    defaults, backend = settings_from(values)
    allow = None
    if args.allow is not None:
        allow = frozenset(part.strip() for part in args.allow.split(",") if part.strip())
        unknown = sorted(allow - set(strategy_names()))
        if not allow or unknown:
            raise ConfigError(f"--allow names no strategy {unknown[0]!r}; choose from {', '.join(strategy_names())}"
                              if unknown else "--allow is empty")
    limits = ProxyLimits(max_tokens=defaults.max_tokens, max_width=args.max_width, max_n=args.max_n, allow=allow)
    token = args.api_key or os.environ.get(KEY_ENV) or None
    if token is not None and len(token) < 8:
        raise ConfigError("--api-key must be at least 8 characters")
    if token is None and args.host not in LOOPBACK:
        token = secrets.token_urlsafe(24)
    check_port_free(args.host, args.port)
    return ProxyService(defaults, backend, limits, max_queue=args.max_queue), token


def banner(args: argparse.Namespace, service: ProxyService, token: str | None) -> str:
    shown = "HOST" if args.host in ("0.0.0.0", "::") else args.host
    key = f" · api key {token}" if token and not (args.api_key or os.environ.get(KEY_ENV)) else \
        " · api key required" if token else ""
    return (f"beamtui proxy: OpenAI API at http://{shown}:{args.port}/v1 · default {service.defaults.spec} on "
            f"{service.backend.backend}{key} · Ctrl+C stops it")


def proxy_command(args: argparse.Namespace) -> int:
    from tui.commands.proxy_http import serve

    service, token = proxy_plan(args)
    if args.tui:
        from tui.proxy_app import ProxyApp

        app = ProxyApp(service, args.host, args.port, token, banner(args, service, token))
        app.run()
        if app.failure:
            raise ConfigError(app.failure)
        return 0
    return asyncio.run(serve(service, args.host, args.port, token, banner(args, service, token)))


def watch_command(args: argparse.Namespace) -> int:
    from tui.proxy_app import WatchApp

    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"malformed URL {args.url!r}: expected http(s)://host:port")
    app = WatchApp(url, args.api_key or os.environ.get(KEY_ENV))
    app.run()
    if app.failure:
        raise ConfigError(app.failure)
    return 0

