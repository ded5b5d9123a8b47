"""Every command-line flag, declared once, and its translation into settings.

Flags may stand before or after the subcommand and mean the same there: every parser leaves a flag it was not
given unset (argparse.SUPPRESS), so a subcommand never overwrites what was given before it, and a flag given
before a subcommand that does not take it is refused with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from engine.errors import ConfigError
from engine.registry import CUTS, OUTPUTS, readers, strategy_names
from engine.settings import APIS, BACKEND_FIELDS, BACKENDS, FLASH_ATTN, MODES, WEIGHTS, BackendSettings, SearchSettings

AFTER_COMMAND = "_after_command"
SERVED_ENV = "BEAMTUI_SERVED"  # set for the dashboards `serve` starts: a visitor may not redirect the API key
SEARCHING = frozenset({"tui", "run", "bench", "serve", "proxy"})
EVERYWHERE = frozenset({"tui", "run", "bench", "gen", "eval", "serve", "proxy"})


@dataclass(frozen=True)
class Flag:
    dest: str
    help: str
    type: type | None = str  # None: a switch
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None  # a callable: read when parsing
    commands: frozenset[str] = SEARCHING
    in_config: bool = True  # may be set in the TOML config
    many: bool = False  # may be given more than once
    aliases: tuple[str, ...] = ()  # older names still taken, on the command line and in the config
    unset: str | None = None  # what the setting's default of None means, for --help

    @property
    def name(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def options(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    @property
    def readers(self) -> tuple[str, ...]:
        """The strategies that read this flag's setting; empty when every strategy does."""
        return readers(self.dest)


FLAGS = (
    # What to search
    # The proxy's prompts come in its requests.
    Flag("prompt", "the user prompt to answer", commands=SEARCHING - {"proxy"}),
    Flag("system_prompt", "a system message placed before the prompt (gen: the teacher's instructions)",
         commands=(SEARCHING | {"gen", "eval"}) - {"proxy"}),
    Flag("strategy", "the search strategy", choices=strategy_names),
    Flag("block_tokens", "tokens per block", int, commands=SEARCHING | {"eval"}),
    Flag("max_tokens", "tokens per answer at most", int, commands=EVERYWHERE),
    Flag("alpha", "power-sampling exponent: target p^alpha", float, commands=SEARCHING | {"eval"}),
    Flag("temperature", "proposal temperature", float, commands=EVERYWHERE, unset="1/alpha"),
    Flag("seed", "seed for a reproducible run", int, commands=EVERYWHERE, unset="random, reported"),
    Flag("mode", "send each round's requests in parallel or one at a time", choices=MODES,
         commands=EVERYWHERE - {"bench"}),  # bench runs both
    # Strategy settings: their help names the strategies that read them (engine.registry)
    Flag("beam_width", "beams kept after each block", int),
    Flag("n_per_beam", "continuations sampled per beam per block", int),
    Flag("length_penalty", "score = alpha*sum(logp)/len^penalty", float),
    Flag("chains", "chains run together", int),
    Flag("mcmc_steps", "Metropolis-Hastings steps after each block", int),
    Flag("tries", "proposals per Metropolis-Hastings step; above 1, multiple-try Metropolis: one request of "
         "2*tries-1 samples a step", int),
    Flag("cut", "where a Metropolis-Hastings step cuts the answer: uniformly, or where the model's next-token "
         "entropy rises (its decisions; exact on the local backend, from the top alternatives elsewhere)",
         choices=CUTS),
    Flag("particles", "particles", int),
    Flag("ess_threshold", "resample below this fraction of particles as ESS", float),
    Flag("output", "answer with a draw from p^alpha (sample: a chain's final state chosen uniformly, a particle "
         "drawn by weight) or the highest alpha*log p of the final population (best, mode-seeking)",
         choices=OUTPUTS, aliases=("smc_output",)),
    Flag("top_k", "candidate tokens at each decision (the likeliest next tokens, at most 20)", int),
    Flag("rollouts", "continuations per candidate that estimate the p^alpha mass of its futures", int),
    Flag("horizon", "tokens each rollout looks ahead, at least block-tokens - 1", int,
         unset="the rest of the block"),
    Flag("best_of", "answers to choose from", int),
    Flag("votes", "answers sampled and grouped by what they answer; the largest group wins", int),
    # Where requests go
    Flag("backend", "local, openai or tinker", choices=BACKENDS, commands=EVERYWHERE),
    Flag("base_url", "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; again for each further replica "
         "(TOML: base-urls = [...])", commands=EVERYWHERE, many=True),
    Flag("tinker_clients", "Tinker sampling clients to spread requests over, each with the SDK's own limit of 400 "
         "dispatched requests", int, commands=EVERYWHERE),
    Flag("endpoint_max_concurrent", "requests in flight per endpoint at most", int, commands=EVERYWHERE,
         unset="only the global cap"),
    Flag("model", "model name on the endpoint, or Tinker base model", commands=EVERYWHERE),
    Flag("model_path", "a GGUF file for the local backend", commands=EVERYWHERE, unset="the embedded SmolLM2-135M"),
    Flag("tokenizer", "tokenizer for remote backends: .gguf file, 'embedded', or HF name", commands=EVERYWHERE,
         unset="an OpenAI server's own /tokenize, else --model's from Hugging Face"),
    Flag("api", "completions or chat, for chat-only endpoints", choices=APIS, commands=EVERYWHERE),
    Flag("max_concurrent", "requests in flight at most", int, commands=EVERYWHERE),
    Flag("timeout", "seconds per request attempt; on the local backend, seconds the decoder may stand still",
         float, commands=EVERYWHERE),
    Flag("max_retries", "retries per request on 429/5xx/timeouts", int, commands=EVERYWHERE),
    Flag("latency", "simulated network delay per local request, in seconds", float, commands=EVERYWHERE),
    Flag("threads", "CPU threads for the local model", int, commands=EVERYWHERE, unset="all cores"),
    Flag("weights", "local weight layout: auto (probed, fastest safe) or one of plain, repacked, "
         "repacked-one-token", choices=WEIGHTS, commands=EVERYWHERE),
    Flag("flash_attn", "the local decoder's flash attention: auto (llama.cpp decides), on or off", choices=FLASH_ATTN,
         commands=EVERYWHERE),
    Flag("config", "a TOML file with the same settings as the flags", commands=EVERYWHERE, in_config=False),
)
BY_DEST = {flag.dest: flag for flag in FLAGS}
BY_NAME = BY_DEST | {alias: flag for flag in FLAGS for alias in flag.aliases}
BY_NAME_FLAG = {"--" + name.replace("_", "-") for name in BY_NAME}


# Flags people reach for that mean something else here, and what to use instead.
HINTS = {("eval", "--strategy"): "eval compares several: --strategies greedy,beam:2x2,smc:8",
         ("bench", "--mode"): "bench runs both modes and times each"}


class OneLineParser(argparse.ArgumentParser):
    """Bad flags end in one line on stderr and exit code 2, without the usage block. No abbreviations: `--mode`
    must never be read as `--model`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"beamtui: error: {message}\n")


def add_command(commands, name: str, summary: str, description: str, examples: Iterable[str]):
    """A subcommand's parser: a line for the list of commands, a paragraph and examples for its own --help."""
    return commands.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {description}",
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def unrecognized(extras: list[str], command: str) -> str:
    """What to say of arguments no parser took: a known flag given to a command that does not read it is
    named as such, with a hint where there is one."""
    flag = extras[0].partition("=")[0]
    if flag not in BY_NAME_FLAG:
        return f"unrecognized arguments: {' '.join(extras)}"
    where = "beamtui" if command == "tui" else f"beamtui {command}"
    hint = HINTS.get((command, flag))
    return f"{flag} does not apply to `{where}`" + (f" ({hint})" if hint else "")


def command_defaults(command: str) -> dict:
    """What each setting is when not given, for `command`: the settings' own defaults, and eval's and gen's."""
    from engine.eval.evaluator import EVAL_SEARCH_DEFAULTS
    from engine.gen.generator import GEN_SEARCH_DEFAULTS

    defaults = {f.name: f.default for settings in (SearchSettings, BackendSettings)
                for f in dataclasses.fields(settings)}
    return defaults | {"eval": EVAL_SEARCH_DEFAULTS, "gen": GEN_SEARCH_DEFAULTS}.get(command, {})


def flag_help(flag: Flag, default: object) -> str:
    """The flag's help with its true default, read from the settings rather than written out by hand."""
    text = f"{', '.join(flag.readers)}: {flag.help}" if flag.readers else flag.help
    if flag.type is None or flag.many or flag.dest in ("prompt", "system_prompt", "model"):
        return text
    shown = flag.unset if default is None else f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text} (default: {shown})" if shown is not None else text


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Every shared flag that `command` takes, unset unless given, its help showing the command's default."""
    defaults = command_defaults(command)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        if command not in flag.commands:
            continue
        title = "strategy" if flag.readers else "backend" if flag.dest in BACKEND_FIELDS else "settings"
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        # A repeatable flag given after the subcommand lands apart: argparse would let it overwrite the copies
        # given before the subcommand, and join_repeated puts the two together.
        dest = flag.dest + AFTER_COMMAND if flag.many and command != "tui" else flag.dest
        options: dict = {"dest": dest, "help": flag_help(flag, defaults.get(flag.dest)), "default": argparse.SUPPRESS}
        if flag.type is None:
            options["action"] = "store_true"
        elif flag.many:
            options["action"] = "append"
            options["type"] = flag.type
        else:
            options["type"] = flag.type
        choices = flag.options
        if flag.type is not None:
            options["metavar"] = "{" + ",".join(choices) + "}" if choices else flag.dest.upper()
        if choices:
            options["choices"] = choices
        group.add_argument(flag.name, *("--" + alias.replace("_", "-") for alias in flag.aliases), **options)


def command_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest.removesuffix(AFTER_COMMAND) for action in parser._actions
            if action.dest not in ("help", "command")}


def join_repeated(args: argparse.Namespace) -> argparse.Namespace:
    """`--base-url A run --base-url B` means both A and B."""
    for flag in FLAGS:
        after = vars(args).pop(flag.dest + AFTER_COMMAND, None)
        if after is not None:
            setattr(args, flag.dest, (getattr(args, flag.dest, None) or []) + after)
    return args


def refuse_misplaced(given: Iterable[str], command: str, accepted: set[str]) -> None:
    """A flag given before a subcommand that does not take it is an error, never silently dropped."""
    for dest in given:
        if dest not in accepted:
            raise ConfigError(f"{BY_DEST[dest].name if dest in BY_DEST else dest} does not apply to "
                              f"`beamtui {command}`")


def refuse_other_strategies(given: Iterable[str], strategy: str) -> None:
    """A flag read only by another strategy would be ignored by this run: say so instead."""
    for dest in given:
        owners = BY_DEST[dest].readers if dest in BY_DEST else ()
        if owners and strategy not in owners:
            raise ConfigError(f"{BY_DEST[dest].name} is a setting of --strategy {' or '.join(owners)}, not {strategy}")


def merged_values(args: argparse.Namespace) -> dict:
    """The config file's settings, overridden by the flags given."""
    values = vars(args)
    merged = read_config(values["config"]) if values.get("config") else {}
    return merged | {k: v for k, v in values.items() if k not in ("config", "command")}


def read_config(path: str) -> dict:
    """Settings from a TOML file: the same names as the flags, with dashes or underscores, and a [keymap] table.
    A file may hold settings of every command and strategy; each command reads its own."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None
    values = {}
    for key, value in data.items():
        if key in ("base-urls", "base_urls"):
            if not isinstance(value, list) or not value or not all(isinstance(url, str) for url in value):
                raise ConfigError(f"setting {key!r} in {path} must be a list of URLs, got {value!r}")
            values["base_url"] = value
            continue
        if key == "keymap":  # the dashboard's keys; tui.keymap checks it against the bindings
            if not isinstance(value, dict):
                raise ConfigError(f"[keymap] in {path} must be a table of binding ids to keys")
            values["keymap"] = value
            continue
        flag = BY_NAME.get(key.replace("-", "_"))
        if flag is None or not flag.in_config:
            raise ConfigError(f"unknown setting {key!r} in {path}")
        expected = flag.type or bool
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            kind = {int: "an integer", float: "a number", bool: "true or false"}.get(expected, "a string")
            raise ConfigError(f"setting {key!r} in {path} must be {kind}, got {value!r}")
        if flag.options and value not in flag.options:
            raise ConfigError(f"setting {key!r} in {path} must be one of {', '.join(flag.options)}, got {value!r}")
        values[flag.dest] = value
    return values


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"beamtui: error: {message}", file=sys.stderr)
    raise SystemExit(code)
