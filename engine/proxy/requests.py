"""An OpenAI request body as the search it asks for, or an OpenAI-style error naming what cannot be honoured.

The `model` field is a spec (`smc:8`, `mcmc:2x5x4`, `greedy`), optionally followed by `/` and the upstream
model (`smc:8/Qwen/Qwen2.5-7B-Instruct`); a plain model name runs the proxy's default strategy. Search settings
come in an object named `beamtui`. The API's own fields mean what they mean there; a field or a value the
proxy cannot honour is refused with a 400 naming it, never ignored. Values that ask for the API's default (a
`frequency_penalty` of 0, `top_p` of 1, no tools) are honoured by doing what is done anyway.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import ConfigError
from engine.registry import strategy_info, strategy_names
from engine.sampler import Message
from engine.settings import MAX_SEED, MOST_STOPS, SEARCH_FIELDS, SearchSettings

Kind = Literal["chat", "completions"]
FANS_OUT = ("n_per_beam", "rollouts")  # sizes beyond the width that multiply the requests in flight at once

# Settings a request may set in its `beamtui` object: every search setting but what the rest of the body says.
BEAMTUI_FIELDS = SEARCH_FIELDS - {"prompt", "system_prompt", "strategy", "stop"}
# Fields accepted only at the value that asks for the API's default behaviour.
NEUTRAL = {
    "frequency_penalty": lambda v: v in (0, 0.0, None),
    "presence_penalty": lambda v: v in (0, 0.0, None),
    "top_p": lambda v: v in (1, 1.0, None),
    "logit_bias": lambda v: v in (None, {}),
    "tools": lambda v: v in (None, []),
    "tool_choice": lambda v: v in (None, "none"),
    "functions": lambda v: v in (None, []),
    "function_call": lambda v: v in (None, "none"),
    "parallel_tool_calls": lambda v: v is None or isinstance(v, bool),
    "response_format": lambda v: v is None or v == {"type": "text"},
    "store": lambda v: v in (None, False),
    "metadata": lambda v: v in (None, {}),
    "service_tier": lambda v: v in (None, "auto", "default"),
    "echo": lambda v: v in (None, False),
    "best_of": lambda v: v in (None, 1),
    "suffix": lambda v: v in (None, ""),
    "top_logprobs": lambda v: v in (None, 0),
}
COMMON = {"model", "stream", "stream_options", "max_tokens", "temperature", "seed", "stop", "n", "user", "beamtui",
          "logprobs"}
ACCEPTED = {"chat": COMMON | {"messages", "max_completion_tokens"} | set(NEUTRAL) - {"echo", "best_of", "suffix"},
            "completions": COMMON | {"prompt"} | {"frequency_penalty", "presence_penalty", "top_p", "logit_bias",
                                                   "echo", "best_of", "suffix", "user"}}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class ProxyError(Exception):
    """What the client is told, as the OpenAI API tells it: {"error": {"message", "type", "param", "code"}}."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None  # seconds, for a 429

    @property
    def type(self) -> str:
        return {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
            self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


@dataclass(frozen=True)
class ProxyLimits:
    """What any one request may ask for, so that no client takes the upstream for itself."""

    max_tokens: int = 2048
    max_width: int = 64  # beams, chains, particles, N, continuations per beam, rollouts per candidate
    max_n: int = 8  # searches per request
    allow: frozenset[str] | None = None  # the strategies served; None: every one


@dataclass(frozen=True)
class ProxyRequest:
    kind: Kind
    model: str  # as the client named it, echoed back
    search: SearchSettings
    prompt: tuple[Message, ...] | str  # a conversation, or a raw completion prompt
    upstream: str | None  # the upstream model; None: the proxy's own
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    user: str | None = None

    @property
    def spec(self) -> str:
        return self.search.spec


def parse_request(kind: Kind, body: Any, defaults: SearchSettings, limits: ProxyLimits,
                  serves: Callable[[str], bool]) -> ProxyRequest:
    """The request `body` asks for, at the proxy's `defaults` and within its `limits`; `serves(name)` says whether
    an upstream model name is one the proxy can reach. Raises ProxyError."""
    if not isinstance(body, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - ACCEPTED[kind])
    if unknown:
        raise ProxyError(400, f"unsupported parameter: {unknown[0]!r} (beamtui cannot honour it)", unknown[0],
                         "unsupported_parameter")
    for name, neutral in NEUTRAL.items():
        if name in body and not neutral(body[name]):
            raise ProxyError(400, f"{name}={body[name]!r} is not supported: beamtui samples the model's own "
                                  f"distribution, with no tools", name, "unsupported_value")
    model = _string(body, "model", required=True)
    spec, upstream = split_model(model)
    if upstream is not None and not serves(upstream):
        raise ProxyError(404, f"the model {upstream!r} is not served here", "model", "model_not_found")
    changes = _api_settings(kind, body, limits) | _beamtui_settings(body.get("beamtui"))
    prompt, head = _prompt(kind, body)
    search = _settings(defaults, spec, changes | {"prompt": head}, limits)
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and (not stream or not isinstance(options, dict) or set(options) - {"include_usage"}
                                or not isinstance(options.get("include_usage", False), bool)):
        raise ProxyError(400, "stream_options takes {\"include_usage\": true|false}, with stream: true",
                         "stream_options")
    n = _integer(body, "n", 1, limits.max_n)
    logprobs = body.get("logprobs")
    if kind == "completions":
        if logprobs not in (None, 0):
            raise ProxyError(400, "logprobs above 0 (top alternatives per token) is not supported; 0 gives each "
                                  "token's log-probability", "logprobs", "unsupported_value")
        wants_logprobs = logprobs == 0
    else:
        if logprobs is not None and not isinstance(logprobs, bool):
            raise ProxyError(400, "logprobs must be true or false", "logprobs")
        wants_logprobs = bool(logprobs)
    user = _string(body, "user")
    return ProxyRequest(kind, model, search, prompt, upstream, n, stream,
                        bool((options or {}).get("include_usage")), wants_logprobs, user)


def split_model(model: str) -> tuple[str | None, str | None]:
    """(spec, upstream model) of a `model` field: `smc:8/Qwen/Qwen2.5-7B` -> ("smc:8", "Qwen/Qwen2.5-7B");
    `smc:8` -> ("smc:8", None); a plain name -> (None, name)."""
    head, _, tail = model.partition("/")
    if _is_spec(head):
        return head, tail or None
    return None, model


def _is_spec(text: str) -> bool:
    return text.partition(":")[0] in strategy_names()


def _settings(defaults: SearchSettings, spec: str | None, changes: dict, limits: ProxyLimits) -> SearchSettings:
    try:
        search = defaults.with_spec(spec) if spec else defaults
        if "max_tokens" in changes and "block_tokens" not in changes:  # a shorter answer takes shorter blocks
            changes["block_tokens"] = min(search.block_tokens, changes["max_tokens"])
        search = search.replace(**changes)
    except ConfigError as exc:
        raise ProxyError(422, str(exc), "beamtui" if spec is None else "model", "invalid_settings") from None
    if limits.allow is not None and search.strategy not in limits.allow:
        raise ProxyError(400, f"the strategy {search.strategy!r} is not served here; choose one of "
                              f"{', '.join(sorted(limits.allow))}", "model", "strategy_not_allowed")
    sizes = {"width": search.width} | {field: getattr(search, field) for field in FANS_OUT
                                       if field in search.info.settings_read}
    for name, size in sizes.items():
        if size > limits.max_width:
            field = search.width_field if name == "width" else name
            raise ProxyError(400, f"{field} {size} is more than this proxy's --max-width {limits.max_width}", "model",
                             "too_wide")
    if search.max_tokens > limits.max_tokens:
        raise ProxyError(400, f"max_tokens {search.max_tokens} is more than this proxy's --max-tokens "
                              f"{limits.max_tokens}", "max_tokens", "too_long")
    return search


def _api_settings(kind: Kind, body: dict, limits: ProxyLimits) -> dict:
    """The search settings the API's own fields set."""
    changes: dict = {}
    tokens = [_integer(body, name, 1, limits.max_tokens) for name in ("max_tokens", "max_completion_tokens")
              if body.get(name) is not None]
    if len(set(tokens)) > 1:
        raise ProxyError(400, "max_tokens and max_completion_tokens differ; give one", "max_completion_tokens")
    if tokens:
        changes["max_tokens"] = tokens[0]
    if body.get("temperature") is not None:
        temperature = body["temperature"]
        if not _number(temperature) or not 0 <= temperature <= 2:
            raise ProxyError(400, f"temperature must be a number from 0 to 2, got {temperature!r}", "temperature")
        changes["temperature"] = float(temperature)
    if body.get("seed") is not None:
        changes["seed"] = _integer(body, "seed", 0, MAX_SEED)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > MOST_STOPS or not all(isinstance(s, str) and s for s in stops):
            raise ProxyError(400, f"stop must be a string or up to {MOST_STOPS} non-empty strings", "stop")
        changes["stop"] = tuple(stops)
    return changes


def _beamtui_settings(given: Any) -> dict:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ProxyError(400, "beamtui must be an object of search settings, e.g. {\"alpha\": 4}", "beamtui")
    unknown = sorted(set(given) - BEAMTUI_FIELDS)
    if unknown:
        raise ProxyError(400, f"beamtui.{unknown[0]} is no search setting; choose from "
                              f"{', '.join(sorted(BEAMTUI_FIELDS))}", f"beamtui.{unknown[0]}", "unknown_setting")
    kinds = {f.name: f.type for f in dataclasses.fields(SearchSettings)}
    for name, value in given.items():
        kind = kinds[name]
        ok = (isinstance(value, int) and not isinstance(value, bool) if kind == "int"
              else _number(value) if kind == "float"
              else value is None or _number(value) if kind == "float | None"
              else value is None or (isinstance(value, int) and not isinstance(value, bool)) if kind == "int | None"
              else isinstance(value, str))
        if not ok:
            raise ProxyError(400, f"beamtui.{name} has the wrong type: {value!r}", f"beamtui.{name}")
    return dict(given)


def _prompt(kind: Kind, body: dict) -> tuple[tuple[Message, ...] | str, str]:
    """The prompt (a conversation, or raw text) and a line of it for the settings' `prompt`."""
    if kind == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ProxyError(400, "prompt must be one non-empty string (token-id and batched prompts are not "
                                  "supported)", "prompt")
        return prompt, prompt
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "messages must be a non-empty list", "messages")
    turns = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ProxyError(400, f"{where} must be an object with role and content", where)
        role = ROLES.get(message.get("role"))
        if role is None:
            raise ProxyError(400, f"{where}.role must be one of {', '.join(ROLES)}, got {message.get('role')!r}",
                             f"{where}.role")
        extra = sorted(set(message) - {"role", "content", "name"})
        if extra:
            raise ProxyError(400, f"{where}.{extra[0]} is not supported", f"{where}.{extra[0]}")
        turns.append(Message(role, _content(message.get("content"), where)))
    if turns[-1].role != "user":
        raise ProxyError(400, "the last message must be the user's: the search writes the assistant's answer",
                         f"messages[{len(turns) - 1}].role")
    return tuple(turns), turns[-1].content


def _content(content: Any, where: str) -> str:
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ProxyError(400, f"{where}.content may hold text parts only", f"{where}.content")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str) or not content.strip():
        raise ProxyError(400, f"{where}.content must be non-empty text", f"{where}.content")
    return content


def _string(body: dict, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ProxyError(400, f"{name} must be a non-empty string", name)
    return value


def _bool(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProxyError(400, f"{name} must be true or false", name)
    return value


def _integer(body: dict, name: str, least: int, most: int) -> int:
    value = body.get(name)
    if value is None:
        return least
    if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most:
        raise ProxyError(400, f"{name} must be an integer from {least} to {most:,}, got {value!r}", name)
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def model_entries(defaults: SearchSettings, limits: ProxyLimits) -> list[dict]:
    """GET /v1/models: every strategy served, with its default spec."""
    entries = []
    for name in strategy_names():
        if limits.allow is not None and name not in limits.allow:
            continue
        try:
            spec = defaults.with_spec(name).spec
        except ConfigError:  # the proxy's defaults do not suit it (a temperature of 0 for a sampler)
            continue
        entries.append({"id": spec, "object": "model", "created": 0, "owned_by": "beamtui",
                        "beamtui": {"strategy": name, "answer_is": strategy_info(name).answer_is(
                            defaults.with_spec(name))}})
    return entries
