"""A GGUF model as llama.cpp loads it: weights, vocabulary, tokenizer and chat template."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.backends.chat_rendering import RendersChat
from engine.backends.local.layout import PLAIN, REPACKED, weight_layout
from engine.backends.local.model_file import load_llama_cpp
from engine.errors import ConfigError
from engine.sampler import Message

if TYPE_CHECKING:
    import numpy as np


class GGUFModel(RendersChat):
    """A loaded model. `vocab_only` loads the tokenizer alone (for remote backends that need our token ids)."""

    def __init__(self, path: Path, *, vocab_only: bool = False, layout: str | None = None):
        """`layout` forces a weight layout (see `layout.LAYOUTS`); by default it is probed."""
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        self.llama = llama_cpp = load_llama_cpp()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        params.vocab_only = vocab_only
        self.layout = REPACKED if vocab_only else layout or weight_layout(llama_cpp, path)
        params.use_extra_bufts = self.layout != PLAIN
        self.path = path
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ConfigError(f"cannot load {path.name}: not a GGUF model llama.cpp understands")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        template = llama_cpp.llama_model_chat_template(self.model, None)
        self.chat_template = template.decode() if template else None
        self.bos_text = self.piece(llama_cpp.llama_vocab_bos(self.vocab), special=True)
        self.eos_id = llama_cpp.llama_vocab_eos(self.vocab)
        self.eos_text = self.piece(self.eos_id, special=True)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bpe = llama_cpp.llama_vocab_type(self.vocab) == llama_cpp.LLAMA_VOCAB_TYPE_BPE
        self._plain_ids = functools.lru_cache(maxsize=4096)(self._plain_text_ids)  # text between special tokens
        self._specials = self._special_tokens() if self.bpe else []  # at load, which runs off the event loop

    @functools.cached_property
    def eog(self) -> np.ndarray:
        """Whether each token ends generation; built on first use (a tokenizer alone never needs it)."""
        import numpy as np

        return np.array([self.llama.llama_vocab_is_eog(self.vocab, t) for t in range(self.n_vocab)])

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        data = text.encode()
        size = len(data) + 8
        while True:
            buffer = (self.llama.llama_token * size)()
            count = self.llama.llama_tokenize(self.vocab, data, len(data), buffer, size, False, special)
            if count >= 0:
                return list(buffer[:count])
            size = -count

    def encode(self, text: str) -> list[int]:
        return self._tokenize(text, special=False)

    def encode_prompt(self, prompt: str) -> list[int]:
        tokens = self._special_split(prompt) if self.bpe else self._tokenize(prompt, special=True)
        if self.add_bos and not prompt.startswith(self.bos_text):
            tokens.insert(0, self.llama.llama_vocab_bos(self.vocab))
        return tokens

    def _special_tokens(self) -> list[tuple[str, int, int]]:
        """(text, id, attributes) of every special token, longest first, as llama.cpp partitions a prompt by them:
        one look at every token's attributes (~18 ms for SmolLM2's 49,152)."""
        llama, vocab = self.llama, self.vocab
        kinds = llama.LLAMA_TOKEN_ATTR_CONTROL | llama.LLAMA_TOKEN_ATTR_USER_DEFINED | llama.LLAMA_TOKEN_ATTR_UNKNOWN
        found = []
        for token in range(self.n_vocab):
            attributes = llama.llama_vocab_get_attr(vocab, token)
            if attributes & kinds:
                text = self.piece(token, special=True)
                if text:
                    found.append((text, token, attributes))
        return sorted(found, key=lambda entry: -len(entry[0].encode()))

    def _special_split(self, prompt: str) -> list[int]:
        """The ids llama.cpp gives a prompt with its special tokens parsed, for a BPE vocabulary, with the text
        between special tokens tokenised once and kept (a chat template's fixed parts repeat): llama.cpp itself
        cuts the text at special tokens (longest first, whitespace stripped beside those that ask for it) and
        tokenises each piece on its own, so the result is the same (tests: test_prompt_ids_match_llama_cpp).
        A gen prompt: 156 -> 80 us."""
        llama = self.llama
        pieces: list[str | int] = [prompt]
        for text, token, attributes in self._specials:
            split: list[str | int] = []
            for piece in pieces:
                if not isinstance(piece, str) or text not in piece:
                    split.append(piece)
                    continue
                parts = piece.split(text)
                for index, part in enumerate(parts):
                    if index and attributes & llama.LLAMA_TOKEN_ATTR_RSTRIP:
                        part = part.lstrip(" \t\n\r\f\v")
                    if index < len(parts) - 1 and attributes & llama.LLAMA_TOKEN_ATTR_LSTRIP:
                        part = part.rstrip(" \t\n\r\f\v")
                    if part:
                        split.append(part)
                    if index < len(parts) - 1:
                        split.append(token)
            pieces = split
        ids: list[int] = []
        for piece in pieces:
            if isinstance(piece, int):
                ids.append(piece)
            else:
                ids.extend(self._plain_ids(piece))
        return ids

    def _plain_text_ids(self, text: str) -> tuple[int, ...]:
        return tuple(self._tokenize(text, special=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        """The text of a whole token sequence. A sequence cut inside a multi-byte character ends in U+FFFD."""
        if not token_ids:
            return ""
        tokens = (self.llama.llama_token * len(token_ids))(*token_ids)
        size = len(token_ids) * 8 + 16
        while True:
            buffer = ctypes.create_string_buffer(size)
            count = self.llama.llama_detokenize(self.vocab, tokens, len(token_ids), buffer, size, False, False)
            if count >= 0:
                return buffer.raw[:count].decode(errors="replace")
            size = -count

    def piece(self, token: int, *, special: bool = False) -> str:
        buffer = ctypes.create_string_buffer(64)
        count = self.llama.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        return buffer.raw[: max(count, 0)].decode(errors="replace")

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        if self.chat_template is None:
            return "\n\n".join(m.content for m in messages) + "\n"
        return render_template(self.chat_template, messages, bos_token=self.bos_text, eos_token=self.eos_text)

    @property
    def template(self) -> str:
        return "gguf:" + self.path.name if self.chat_template else "none (raw prompt)"

    def close(self) -> None:
        if self.model:
            self.llama.llama_model_free(self.model)
            self.model = None


@functools.lru_cache(maxsize=8)
def _compiled_template(template: str):
    """Compiling a chat template costs milliseconds; gen renders one per question."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_template(template: str, messages: Sequence[Message], *, bos_token: str, eos_token: str) -> str:
    """Render a GGUF's Jinja chat template the way Hugging Face does, ending with the assistant's turn."""
    from jinja2.exceptions import TemplateError

    try:
        return _compiled_template(template).render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        raise ConfigError(f"the model's chat template failed: {exc}") from None
