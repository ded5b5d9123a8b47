"""The chat prompt's ids for tokenizers that apply the template on our side: the rendered text, then its ids.
(A server's own tokenizer renders and tokenises in one call instead: engine.backends.server_tokenizer.)"""

from __future__ import annotations

from collections.abc import Sequence

from engine.sampler import Message


class RendersChat:
    def render(self, messages: Sequence[Message]) -> list[int]:
        return self.encode_prompt(self.chat_prompt(messages))
