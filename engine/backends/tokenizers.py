"""Tokenizers for the remote backends, which must hold token ids the server did not give us.

`--tokenizer` takes a `.gguf` file (its vocabulary and chat template), `embedded` (the shipped SmolLM2), or a
Hugging Face tokenizer name or local directory.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from engine.backends.chat_rendering import RendersChat
from engine.errors import ConfigError
from engine.sampler import Message, SamplerDefaults


class Tokenizer(Protocol):
    template: str
    eos_id: int | None  # the end-of-sequence token, which a server that answers in text shows as no text
    eos_text: str | None  # its special string (<|im_end|>), by which some servers name it in their logprobs

    def encode(self, text: str) -> list[int]:
        """Plain text to ids; special-token markup stays text."""

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        """The chat template rendered as text, ending where the assistant's answer begins."""

    def encode_prompt(self, prompt: str) -> list[int]:
        """Ids of a rendered chat prompt, its special-token markup parsed."""

    def render(self, messages: Sequence[Message]) -> list[int]:
        """Ids of `messages` in the chat template, ready for the assistant's answer."""


class HFTokenizer(RendersChat):
    def __init__(self, name: str):
        self._tok = _load_hf_tokenizer(name)
        self.template = "hf:" + name if self._tok.chat_template else "none (raw prompt)"
        self.eos_id = self._tok.eos_token_id
        self.eos_text = self._tok.eos_token

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode(list(token_ids), skip_special_tokens=True)

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        if not self._tok.chat_template:
            return "\n\n".join(m.content for m in messages) + "\n"
        return self._tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)

    def encode_prompt(self, prompt: str) -> list[int]:
        return list(self._tok.encode(prompt, add_special_tokens=False))


def _load_hf_tokenizer(name: str):
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "PyTorch was not found" on every start
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # not cached, or not a local directory: try the Hub below
        pass
    if os.environ.get("HF_HUB_OFFLINE") or not _hub_reachable():
        raise ConfigError(
            f"cannot load tokenizer {name!r}: not in the local cache and huggingface.co is unreachable; "
            "pass --tokenizer with a local directory, a .gguf file or 'embedded'"
        )
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # bad names, gated repos and missing files all end here
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot load tokenizer {name!r}: {first_line}") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect, so an offline machine fails at once instead of after the Hub's minute of retries."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tokenizer(spec: str) -> Tokenizer:
    from engine.backends.local.gguf import GGUFModel
    from engine.backends.local.model_file import embedded_model_path

    if spec == "embedded":
        return GGUFModel(embedded_model_path(), vocab_only=True)
    if spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"tokenizer file not found: {spec}")
        return GGUFModel(path, vocab_only=True)
    return HFTokenizer(spec)


class TokenizerBacked(SamplerDefaults):
    """Tokenizer methods of the Sampler protocol, for backends that tokenize on our side of the wire."""

    tokenizer: Tokenizer | None

    def _tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise RuntimeError("the backend has not been started")
        return self.tokenizer

    def tokenize(self, text: str) -> list[int]:
        return self._tokenizer().encode(text)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._tokenizer().decode(token_ids)

    def is_end(self, token_id: int) -> bool:
        return token_id == self._tokenizer().eos_id

    def render_chat(self, messages: Sequence[Message]) -> list[int]:
        return self._tokenizer().render(messages)

    def render_prompt(self, prompt: str) -> list[int]:
        return self._tokenizer().encode_prompt(prompt)

    @property
    def chat_template(self) -> str:
        return self.tokenizer.template if self.tokenizer else "unknown"
