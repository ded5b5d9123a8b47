"""Keys people can change: the config file's `[keymap]` table maps binding ids to keys, as Posting does.

    [keymap]
    width_up = "ctrl+up"
    rerun = "r,f5"          # several keys, comma-separated

Checked before the screen opens: an unknown id, an unknown key name, or two bindings on one key (Textual's own
keys included: ctrl+q, ctrl+p, tab...) is a ConfigError, so a typo never leaves a knob without a key.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

from textual.app import App
from textual.binding import Binding
from textual.keys import Keys
from textual.screen import Screen

from engine.errors import ConfigError

MODIFIERS = ("ctrl", "alt", "shift", "meta", "super", "hyper")
NAMED_KEYS = {key.value for key in Keys} | {"space", "plus", "minus"}


def character_key(character: str) -> str:
    """A one-character key by the name Textual gives it: '+' is 'plus', '[' is 'left_square_bracket'."""
    if character.isalnum():
        return character
    try:
        name = unicodedata.name(character).lower().replace("-", "_").replace(" ", "_")
    except ValueError:
        return character
    return {"plus_sign": "plus", "hyphen_minus": "minus"}.get(name, name)


PRINTABLE_KEYS = {character_key(chr(code)) for code in range(33, 127)}


def canonical_key(key: str, where: str) -> str:
    key = key.strip()
    *modifiers, name = key.split("+") if key not in ("+", "") else [key]
    if len(name) == 1:
        name = character_key(name)
    unknown = [m for m in modifiers if m not in MODIFIERS]
    if unknown or not (name in NAMED_KEYS or name in PRINTABLE_KEYS):
        raise ConfigError(f"{where}: {key!r} is not a key Textual knows (e.g. 'x', 'X', 'ctrl+up', 'f5', 'plus')")
    return "+".join([*modifiers, name])


def reserved_keys() -> dict[str, str]:
    """Keys Textual itself binds in every app, by what they do."""
    keys = {App.COMMAND_PALETTE_BINDING: "the command palette"}
    for binding in (*App.BINDINGS, *Screen.BINDINGS):
        for key in binding.key.split(","):
            keys[canonical_key(key, "textual")] = f"Textual's {binding.action}"
    return keys


def check_keymap(keymap: Mapping[str, object], scopes: Iterable[Iterable[Binding]]) -> dict[str, str]:
    """The keymap with its keys in Textual's long form, or a ConfigError naming what is wrong.

    Each scope is the set of bindings active at once (the app's own, or a dialog's with the app's): within one,
    no key may do two things."""
    scopes = [list(scope) for scope in scopes]
    ids = {binding.id for scope in scopes for binding in scope if binding.id}
    checked = {}
    for binding_id, keys in keymap.items():
        if binding_id not in ids:
            raise ConfigError(f"[keymap]: unknown binding id {binding_id!r}; the ids are {', '.join(sorted(ids))}")
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(f"[keymap]: {binding_id} must be a key, or keys separated by commas, got {keys!r}")
        checked[binding_id] = ",".join(canonical_key(key, f"[keymap] {binding_id}") for key in keys.split(","))
    reserved = reserved_keys()
    for scope in scopes:
        taken = dict(reserved)
        for binding in scope:
            keys = checked.get(binding.id, binding.key) if binding.id else binding.key
            for key in keys.split(","):
                key = canonical_key(key, f"binding {binding.id}")
                owner = binding.id or binding.action
                if taken.get(key, owner) != owner:
                    raise ConfigError(f"[keymap]: {key} would be both {taken[key]} and {owner}; give one of them "
                                      f"another key")
                taken[key] = owner
    return checked
