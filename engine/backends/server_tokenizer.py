"""The server's own tokenizer, for an OpenAI-compatible endpoint given no `--tokenizer`: the token ids are the
server's, exactly, and nothing is fetched from the Hugging Face Hub.

Two dialects are spoken, found out by one probe:
- vLLM: `POST /tokenize` with `prompt` (or `messages`, which applies the model's chat template) and
  `POST /detokenize`, both at the server's root, not under /v1;
- llama.cpp's `llama-server`: `POST /tokenize` with `content`, `POST /detokenize`, and `POST /apply-template`
  for the chat template.

Every call is one blocking round trip (about a millisecond on loopback), so results are cached: a prompt is
rendered once a search, a text decoded once a candidate, and pieces of token strings repeat.
"""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlparse, urlunparse

from engine.errors import ConfigError, redact
from engine.sampler import Message

PROBE_TEXT = "Hello"
CACHED = 4096  # decoded sequences and encoded texts kept


def server_root(base_url: str) -> str:
    """The server's root from its OpenAI base URL: http://host:8000/v1 -> http://host:8000."""
    parsed = urlparse(base_url.rstrip("/"))
    path = parsed.path[: -len("/v1")] if parsed.path.endswith("/v1") else parsed.path
    return urlunparse(parsed._replace(path=path))


class ServerTokenizer:
    """The Tokenizer protocol (engine.backends.tokenizers) answered by the server itself."""

    eos_id: int | None = None  # not told by either dialect; a server answering in ids gives the end token's id
    eos_text: str | None = None

    def __init__(self, root: str, model: str, dialect: str, api_key: str | None, timeout: float):
        self.root = root.rstrip("/")
        self.model = model
        self.dialect = dialect  # "vllm" or "llama.cpp"
        self.api_key = api_key
        self.timeout = timeout
        self.template = f"server:{dialect} ({self.root})"
        self._decoded = functools.lru_cache(CACHED)(self._detokenize)
        self._encoded = functools.lru_cache(CACHED)(self._tokenize)

    @classmethod
    def probe(cls, base_url: str, model: str, api_key: str | None, timeout: float) -> ServerTokenizer | None:
        """The server's tokenizer if it has one of the two dialects, else None."""
        root = server_root(base_url)
        for dialect in ("vllm", "llama.cpp"):
            tokenizer = cls(root, model, dialect, api_key, timeout)
            try:
                if tokenizer._tokenize(PROBE_TEXT):
                    return tokenizer
            except (ConfigError, ValueError, KeyError, TypeError):
                continue
        return None

    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.root + path, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ConfigError(f"{self.root}{path} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = redact(str(getattr(exc, "reason", exc)), self.api_key)
            raise ConfigError(f"the server's tokenizer at {self.root} failed: {reason}") from None
        if not isinstance(answer, dict):
            raise ValueError(f"{path} answered {type(answer).__name__}, not an object")
        return answer

    def _tokens(self, answer: dict) -> list[int]:
        tokens = answer["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ValueError("tokens is not a list of ids")
        return tokens

    def encode(self, text: str) -> list[int]:
        return list(self._encoded(text))

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._decoded(tuple(token_ids))

    def _tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Ids of text; with `special`, markup such as <|im_start|> is read as the special tokens it names."""
        if self.dialect == "vllm":
            return self._tokens(self._post("/tokenize", {"model": self.model, "prompt": text,
                                                         "add_special_tokens": False}))
        return self._tokens(self._post("/tokenize", {"content": text, "add_special": False,
                                                     "parse_special": special}))

    def _detokenize(self, token_ids: tuple[int, ...]) -> str:
        if not token_ids:
            return ""
        if self.dialect == "vllm":
            return str(self._post("/detokenize", {"model": self.model, "tokens": list(token_ids)})["prompt"])
        return str(self._post("/detokenize", {"tokens": list(token_ids)})["content"])

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        """The chat template rendered as text (needed only by servers that take text prompts)."""
        turns = [{"role": m.role, "content": m.content} for m in messages]
        if self.dialect == "vllm":
            ids = self._tokens(self._post("/tokenize", {"model": self.model, "messages": turns,
                                                        "add_generation_prompt": True}))
            return self.decode(ids)
        return str(self._post("/apply-template", {"messages": turns})["prompt"])

    def encode_prompt(self, prompt: str) -> list[int]:
        if self.dialect == "vllm":  # Hugging Face tokenizers read special-token markup in any text
            return self.encode(prompt)
        return self._tokenize(prompt, special=True)

    def render(self, messages: Sequence[Message]) -> list[int]:
        """Ids of the chat prompt, ready for the answer: vLLM applies its template and tokenises in one call."""
        if self.dialect == "vllm":
            turns = [{"role": m.role, "content": m.content} for m in messages]
            return self._tokens(self._post("/tokenize", {"model": self.model, "messages": turns,
                                                         "add_generation_prompt": True}))
        return self.encode_prompt(self.chat_prompt(messages))
