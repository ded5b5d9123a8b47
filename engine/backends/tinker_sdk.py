"""Tinker through its SDK: `await sampling_client.sample(...)` on token-id prompts.

The SDK retries 429s, 5xx, timeouts and dropped connections itself (jittered backoff), so this backend asks
the request layer not to retry on top of it; the layer still applies the cap, the timeout and the metrics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from engine.backends.base import Continuation, SampleRequest, Send
from engine.errors import BackendError, ConfigError, redact
from engine.tokenizers import Tokenizer, TokenizerBacked, load_tokenizer


def backend_error(exc: Exception, secret: str | None) -> BackendError:
    import tinker

    if isinstance(exc, tinker.APIStatusError):
        return BackendError(f"Tinker HTTP {exc.status_code}: {redact(exc.message, secret)}", transient=False,
                            status=exc.status_code)
    if isinstance(exc, (tinker.APIConnectionError, asyncio.TimeoutError)):
        return BackendError(f"Tinker unreachable ({type(exc).__name__})", transient=False)
    return BackendError(f"Tinker request failed: {redact(str(exc), secret)}", transient=False)


class TinkerSampler(TokenizerBacked):
    name = "tinker"
    honours_n = True
    retries_inside = True  # the SDK's own retry loop is the one in charge

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        max_concurrent: int,
        timeout: float,
        model_path: str | None = None,
        tokenizer: str | None = None,
        sampling_client: Any = None,
    ):
        self.model = model
        self.model_path = model_path
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.tokenizer_spec = tokenizer or model
        self.tokenizer: Tokenizer | None = None
        self.client = sampling_client  # tests hand in a stand-in for the remote service

    @property
    def model_name(self) -> str:
        return self.model

    async def start(self, send: Send) -> None:
        if self.client is None and not self.api_key:
            raise ConfigError("the tinker backend needs TINKER_API_KEY in the environment")
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_spec)
        if self.client is None:
            self.client = await self._connect()

    async def _connect(self) -> Any:
        """The sampling client, or a ConfigError within `timeout` seconds.

        Offline, the SDK retries for about 300 s inside calls that do not yield to our loop, so it runs on a
        daemon thread that we can walk away from.
        """
        import tinker
        from tinker.lib.retry_handler import RetryConfig

        created: concurrent.futures.Future = concurrent.futures.Future()

        def create() -> None:
            try:
                service = tinker.ServiceClient(api_key=self.api_key)
                pending = service.create_sampling_client(
                    base_model=self.model,
                    model_path=self.model_path,
                    retry_config=RetryConfig(max_connections=self.max_concurrent),
                )
                created.set_result(pending.result())
            except BaseException as exc:
                created.set_exception(exc)

        threading.Thread(target=create, name="beamtui-tinker-connect", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(created), self.timeout)
        except TimeoutError:
            raise ConfigError(
                f"cannot reach Tinker within {self.timeout:g}s (check TINKER_BASE_URL and network)"
            ) from None
        except tinker.TinkerError as exc:
            raise ConfigError(
                f"Tinker refused the sampling client for {self.model!r}: {redact(str(exc), self.api_key)}"
            ) from None

    async def sample(self, request: SampleRequest) -> list[Continuation]:
        from tinker import types

        params = types.SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=request.seed,
            stop=list(request.stop) or None,
        )
        try:
            response = await self.client.sample(
                prompt=types.ModelInput.from_ints(list(request.prompt_ids)),
                num_samples=request.n,
                sampling_params=params,
            )
        except Exception as exc:  # the SDK's errors, after its own retries
            raise backend_error(exc, self.api_key) from None
        return [self._continuation(sequence) for sequence in response.sequences]

    def _continuation(self, sequence) -> Continuation:
        tokens = tuple(int(t) for t in sequence.tokens)
        logprobs = tuple(float(v) for v in (sequence.logprobs or ()))
        finish = "length" if sequence.stop_reason == "length" else "stop"
        return Continuation(tokens, self.detokenize(tokens), logprobs, finish)

    async def aclose(self) -> None:
        self.client = None
