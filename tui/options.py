"""Command-line flags shared by the TUI and the headless commands, and their translation into settings."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import NoReturn

from engine.errors import ConfigError
from engine.settings import APIS, BACKENDS, MODES, WEIGHTS, BackendSettings, SearchSettings

SEARCH_FIELDS = {
    "prompt": str, "system_prompt": str, "beam_width": int, "n_per_beam": int, "block_tokens": int,
    "max_tokens": int, "alpha": float, "temperature": float, "length_penalty": float, "seed": int, "mode": str,
}
BACKEND_FIELDS = {
    "backend": str, "base_url": str, "model": str, "model_path": str, "tokenizer": str, "api": str,
    "max_concurrent": int, "timeout": float, "max_retries": int, "latency": float, "threads": int, "weights": str,
}


class OneLineParser(argparse.ArgumentParser):
    """Bad flags end in one line on stderr and exit code 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_search_flags(parser: argparse.ArgumentParser, *, prompt_required: bool) -> None:
    group = parser.add_argument_group("search")
    group.add_argument("--prompt", required=prompt_required, help="the user prompt to answer")
    group.add_argument("--system-prompt", help="a system message placed before the prompt")
    group.add_argument("--beam-width", type=int, help="beams kept after each block (default 4)")
    group.add_argument("--n-per-beam", type=int, help="continuations sampled per beam per block (default 4)")
    group.add_argument("--block-tokens", type=int, help="tokens per block (default 32)")
    group.add_argument("--max-tokens", type=int, help="tokens per answer at most (default 128)")
    group.add_argument("--alpha", type=float, help="power-sampling exponent: target p^alpha (default 4)")
    group.add_argument("--temperature", type=float, help="proposal temperature (default 1/alpha)")
    group.add_argument("--length-penalty", type=float, help="score = alpha*sum(logp)/len^penalty (default 1)")
    group.add_argument("--seed", type=int, help="seed for a reproducible search (default: random, reported)")
    group.add_argument("--mode", choices=MODES, help="send each block's requests in parallel or one by one")


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", choices=BACKENDS, help="local (default), openai or tinker")
    group.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--model", help="model name on the endpoint, or Tinker base model")
    group.add_argument("--model-path", help="a GGUF file for the local backend (default: embedded SmolLM2-135M)")
    group.add_argument("--tokenizer", help="tokenizer for remote backends: .gguf file, 'embedded', or HF name")
    group.add_argument("--api", choices=APIS, help="completions (default) or chat, for chat-only endpoints")
    group.add_argument("--max-concurrent", type=int, help="requests in flight at most (default 32)")
    group.add_argument("--timeout", type=float, help="seconds per request attempt (default 60)")
    group.add_argument("--max-retries", type=int, help="retries per request on 429/5xx/timeouts (default 5)")
    group.add_argument("--latency", type=float, help="simulated network delay per local request, in seconds")
    group.add_argument("--threads", type=int, help="CPU threads for the local model (default: all cores)")
    group.add_argument("--weights", choices=WEIGHTS,
                       help="local weight layout: auto (probed, fastest safe) or plain (batches long prompts)")


def _pick(values: dict, fields: dict) -> dict:
    return {name: values[name] for name in fields if values.get(name) is not None}


def settings_from(values: dict) -> tuple[SearchSettings, BackendSettings]:
    """Validated settings from flag values (None means: keep the default)."""
    search = SearchSettings(**_pick(values, SEARCH_FIELDS)).validate()
    backend = BackendSettings(**_pick(values, BACKEND_FIELDS)).validate()
    return search, backend


def read_config(path: str) -> dict:
    """Settings from a TOML file: the same names as the flags, with dashes or underscores."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None
    known = SEARCH_FIELDS | BACKEND_FIELDS
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown setting {key!r} in {path}")
        expected = known[name]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"setting {key!r} in {path} must be a {expected.__name__}, got {value!r}")
        values[name] = value
    return values


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"beamtui: error: {message}", file=sys.stderr)
    raise SystemExit(code)
