"""The `local` backend: the embedded SmolLM2, or any GGUF given with --model-path, decoded in-process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from engine.backends.local.decoder import BatchDecoder
from engine.backends.local.gguf import GGUFModel
from engine.backends.local.model_file import embedded_model_path
from engine.backends.tokenizers import TokenizerBacked
from engine.errors import BackendError
from engine.sampler import EXACT, Continuation, LogprobQuality, SampleRequest, Send
from engine.settings import LOCAL_SEQUENCE_TOKENS


class LocalSampler(TokenizerBacked):
    """The `local` backend: the embedded SmolLM2 or any GGUF given with --model-path."""

    name = "local"
    honours_n = True
    # In-process decoding is never cut off while it makes progress: on a busy machine a request is slower, not
    # lost. The request layer leaves the timeout to `sample`, which applies it to the decoder standing still.
    times_itself = True

    def __init__(
        self,
        model_path: str | None = None,
        *,
        latency: float = 0.0,
        threads: int | None = None,
        context: int = LOCAL_SEQUENCE_TOKENS,
        n_seq_max: int = 16,
        n_batch: int = 512,
        layout: str | None = None,
        stall_timeout: float = 60.0,
        flash_attn: str = "auto",
    ):
        self.flash_attn = flash_attn
        self.path = Path(model_path).expanduser() if model_path else None
        self.layout = layout
        self.latency = latency
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.context, self.n_seq_max, self.n_batch = context, n_seq_max, n_batch
        self.stall_timeout = stall_timeout
        self.model: GGUFModel | None = None
        self.decoder: BatchDecoder | None = None

    @property
    def max_n(self) -> int:
        return self.n_seq_max

    @property
    def max_sequence_tokens(self) -> int:
        return self.context

    def is_end(self, token_id: int) -> bool:
        return bool(self.model is not None and 0 <= token_id < self.model.n_vocab and self.model.eog[token_id])

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        return EXACT  # both come from the same logits row the token is drawn from

    @property
    def model_name(self) -> str:
        return (self.path or embedded_model_path()).name

    async def start(self, send: Send | None = None) -> None:
        if self.decoder is None:
            decoder = BatchDecoder(
                self.path or embedded_model_path(), layout=self.layout, context=self.context,
                n_seq_max=self.n_seq_max, n_batch=self.n_batch, threads=self.threads, flash_attn=self.flash_attn,
            )
            self.model = await asyncio.wrap_future(decoder.ready)
            self.decoder = decoder

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        if self.decoder is None:
            raise BackendError("the local model is not loaded", transient=False)
        if self.latency:
            await asyncio.sleep(self.latency)
        if not request.prompt_ids:
            raise BackendError("empty prompt", transient=False)
        decoder = self.decoder
        answer = asyncio.wrap_future(decoder.submit(request))
        try:
            while True:
                steps = decoder.steps
                done, _ = await asyncio.wait({answer}, timeout=self.stall_timeout)
                if done:
                    return answer.result()
                if decoder.steps == steps:
                    raise BackendError(f"the local decoder made no progress for {self.stall_timeout:g}s",
                                       transient=True)
        finally:
            answer.cancel()  # a cancelled search gives its sequences back at the decoder's next step

    @property
    def tokenizer(self) -> GGUFModel | None:
        """The loaded model is its own tokenizer and chat template."""
        return self.model

    @property
    def prefix_tokens_reused(self) -> int:
        return self.decoder.prefix_tokens_reused if self.decoder else 0

    async def aclose(self) -> None:
        decoder = self.decoder
        self.decoder = self.model = None
        if decoder is not None:
            await asyncio.to_thread(decoder.close)
