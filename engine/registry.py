"""The strategies a search can run, each declared once: its name, the settings it reads, what its answer is and
how its population is viewed. Settings, flags, spec parsing, `run --json`, the dashboard and eval all read this.

Adding a strategy is a module that builds a `StrategyInfo` and one `register` line (the built-ins register in
`engine.strategies`). A size it needs that no strategy has yet is a new field of `SearchSettings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError

OUTPUTS = ("sample", "best")
CUTS = ("uniform", "entropy")  # where an MH step cuts the answer (engine.scoring.cut_log_probabilities)


@dataclass(frozen=True)
class Column:
    """A column of the population view: a field of `engine.events.Member`, formatted with `fmt`."""

    label: str
    width: int
    field: str
    fmt: str = ""


@dataclass(frozen=True)
class PopulationView:
    title: str  # what its members are: Beams, Chains, Particles
    columns: tuple[Column, ...]  # between the rank and the done mark
    by_slot: bool = False  # rows numbered by slot (a chain keeps its number) rather than by rank


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    create: Callable[[], Any]  # a new strategy object: `async run(search) -> Outcome`
    answer_is: Callable[[Any], str]  # given the SearchSettings, what its answer is; before the first colon, short
    view: PopulationView
    sizes: tuple[str, ...] = ()  # the settings its spec names in order: beam:BEAM_WIDTHxN_PER_BEAM
    optional_sizes: int = 0  # how many of the last sizes a spec may leave out (at their defaults, it does)
    width: str | None = None  # the setting that is its width: answers kept alive at once
    depth: str | None = None  # the setting that is its depth: work per block ([ and ] on the dashboard)
    reads: tuple[str, ...] = ()  # settings only it (and strategies sharing them) reads, beyond its sizes
    needs_proposal_logprobs: bool = False  # it corrects for the proposal with log q (mcmc, smc)
    outputs: tuple[str, ...] = ()  # its answer choices (`output`), the first the default
    cuts: tuple[str, ...] = ()  # its cut choices (`cut`), the first the default
    grows: tuple[str, ...] = ()  # the sizes a budget multiplies (eval --budgets); none: its cost is fixed
    blockwise: bool = False  # it grows answers block by block; the others ask for whole answers
    weighted: bool = False  # its candidates carry importance weights (log_weight)
    score_is: str = "target alpha*log p"  # what its candidates' `score` is, as a label beside the number
    temperature: float | None = None  # the one temperature it samples at (greedy: 0); None: the proposal's

    @property
    def choices(self) -> dict[str, tuple[str, ...]]:
        """The settings a spec names by a word after its sizes (smc:8:best, mcmc:2x5:entropy), with their values,
        the first the default."""
        return {name: values for name, values in (("cut", self.cuts), ("output", self.outputs)) if values}

    @property
    def settings_read(self) -> tuple[str, ...]:
        return self.sizes + self.reads + tuple(self.choices)


_REGISTRY: dict[str, StrategyInfo] = {}


def register(info: StrategyInfo) -> StrategyInfo:
    if info.name in _REGISTRY and _REGISTRY[info.name] != info:
        raise ValueError(f"a strategy named {info.name!r} is registered already")
    _REGISTRY[info.name] = info
    return info


def strategy_names() -> tuple[str, ...]:
    """Every registered strategy, in the order they were registered (the dashboard cycles through them so)."""
    return tuple(_REGISTRY)


def strategy_info(name: str) -> StrategyInfo:
    info = _REGISTRY.get(name)
    if info is None:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(_REGISTRY)}")
    return info


def readers(setting: str) -> tuple[str, ...]:
    """The strategies that read a strategy's own setting; empty for settings every strategy shares."""
    return tuple(name for name, info in _REGISTRY.items() if setting in info.settings_read)


def spec_grammar() -> str:
    """Every spec form, as eval's --strategies takes them: beam:BEAM_WIDTHxN_PER_BEAM, smc:PARTICLES[:best]."""
    forms = []
    for info in _REGISTRY.values():
        required = len(info.sizes) - info.optional_sizes
        sizes = "x".join(size.upper() for size in info.sizes[:required])
        sizes += "".join(f"[x{size.upper()}]" for size in info.sizes[required:])
        words = "".join(f"[:{'|'.join(values[1:])}]" for values in info.choices.values())
        forms.append(f"{info.name}:{sizes}{words}" if sizes else info.name)
    return ", ".join(forms)
