"""Tinker through its SDK: `await sampling_client.sample(...)` on token-id prompts.

The SDK retries 429s, 5xx, timeouts and dropped connections itself (jittered backoff), so this backend asks
the request layer not to retry on top of it; the layer still applies the cap, the timeout and the metrics.

Whether `sample` reports raw or temperature-scaled logprobs is disputed upstream (tinker-cookbook PR #86: a
maintainer read the backend and said the logprobs used for sampling, i.e. scaled; tinker-feedback #148: raw).
So `start` asks the service: one draw at temperature 0.5, compared with `compute_logprobs` of the same tokens,
which are at temperature 1 by definition. Raw: log p is exact and log q is estimated from the top alternatives
(`topk_sample_logprobs`). Scaled: log q is exact and log p comes from `compute_logprobs`, exactly, at the cost
of one more call per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from engine.backends.tempering import estimated_entropy, estimated_log_q
from engine.backends.tokenizers import Tokenizer, TokenizerBacked, load_tokenizer
from engine.errors import BackendError, ConfigError, redact
from engine.sampler import EXACT, Continuation, LogprobQuality, Message, SampleRequest, Send

PROBE_TEMPERATURE = 0.5
PROBE_TOKENS = 4
LOGPROB_ALTERNATIVES = 20  # topk_sample_logprobs asked for when log q must be estimated
SCALED_BY = 1e-3  # how far sampled logprobs must stand from compute_logprobs' to count as temperature-scaled


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
    max_n = None
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
        loaded_tokenizer: Tokenizer | None = None,
        sampling_client: Any = None,
        clients: int = 1,
    ):
        self.model = model
        self.model_path = model_path
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.tokenizer_spec = tokenizer or model
        self.tokenizer: Tokenizer | None = loaded_tokenizer
        # Tests hand in stand-ins for the remote service: one client, or a list of them.
        given = sampling_client if isinstance(sampling_client, list) else [sampling_client] if sampling_client else []
        self.clients: list[Any] = given
        self.client_count = len(given) or clients
        self.outstanding: list[int] = [0] * len(given)
        self.scaled: bool | None = None  # whether sample() reports temperature-scaled logprobs; probed at start

    @property
    def model_name(self) -> str:
        return self.model

    def logprob_quality(self, temperature: float) -> LogprobQuality:
        if temperature in (0.0, 1.0):
            return EXACT
        return EXACT if self.scaled else LogprobQuality("exact", "estimated")

    async def start(self, send: Send) -> None:
        if not self.clients and not self.api_key:
            raise ConfigError("the tinker backend needs TINKER_API_KEY in the environment")
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_spec)
        if not self.clients:
            self.clients = list(await asyncio.gather(*(self._connect() for _ in range(self.client_count))))
            self.outstanding = [0] * len(self.clients)
        self.scaled = await self._reports_scaled_logprobs()

    async def _reports_scaled_logprobs(self) -> bool:
        """Draw at temperature 0.5 and score the same tokens at temperature 1: scaled logprobs differ."""
        from tinker import types

        prompt = self.render_chat([Message("user", "Say hi.")])
        params = types.SamplingParams(max_tokens=PROBE_TOKENS, temperature=PROBE_TEMPERATURE, seed=0)
        try:
            client = self.clients[0]
            response = await client.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=1,
                                           sampling_params=params)
            sequence = response.sequences[0]
            raw = await self._raw_logprobs(client, prompt, sequence.tokens)
        except Exception as exc:  # the SDK's errors, after its own retries
            raise ConfigError(f"Tinker failed a probe request: {backend_error(exc, self.api_key)}") from None
        return any(abs(a - b) > SCALED_BY for a, b in zip(sequence.logprobs or (), raw, strict=False))

    async def _raw_logprobs(self, client: Any, prompt: list[int], tokens: list[int]) -> list[float]:
        """log p of `tokens` after `prompt` at temperature 1, from compute_logprobs."""
        from tinker import types

        if not tokens:
            return []
        scored = await client.compute_logprobs(types.ModelInput.from_ints(list(prompt) + list(tokens)),
                                                    prompt_logprobs_last_n=len(tokens))
        return [float(v) for v in scored[-len(tokens):]]

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
                    retry_config=RetryConfig(max_connections=-(-self.max_concurrent // self.client_count)),
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
        tempered = request.temperature not in (0.0, 1.0)
        estimating = tempered and request.proposal_logprobs and not self.scaled
        alternatives = LOGPROB_ALTERNATIVES if estimating or request.entropies else 0
        index = self.outstanding.index(min(self.outstanding))  # the client with the fewest requests in flight
        client = self.clients[index]
        self.outstanding[index] += 1
        try:
            response = await client.sample(
                prompt=types.ModelInput.from_ints(list(request.prompt_ids)),
                num_samples=request.n,
                sampling_params=params,
                topk_sample_logprobs=max(alternatives, request.top_logprobs),
            )
            continuations = []
            for sequence in response.sequences:
                raw = await self._raw_logprobs(client, request.prompt_ids, sequence.tokens) \
                    if tempered and self.scaled else None
                continuations.append(self._continuation(request, sequence, raw))
        except Exception as exc:  # the SDK's errors, after its own retries
            raise backend_error(exc, self.api_key) from None
        finally:
            self.outstanding[index] -= 1
        return continuations

    def _continuation(self, request: SampleRequest, sequence, raw: list[float] | None) -> Continuation:
        tokens = tuple(int(t) for t in sequence.tokens)
        reported = [float(v) for v in (sequence.logprobs or ())]
        temperature = request.temperature
        top = sequence.topk_logprobs
        if temperature == 0:
            logp, logq = reported, [0.0] * len(reported)
        elif temperature == 1:
            logp = logq = reported
        elif raw is not None:  # the service reported log q; compute_logprobs gave log p
            logp, logq = raw, reported
        elif top and request.proposal_logprobs:
            logp = reported
            logq = [estimated_log_q(v, [lp for _, lp in alts or ()], temperature)
                    for v, alts in zip(reported, top, strict=True)]
        else:
            logp, logq = reported, None
        finish = str(sequence.stop_reason or "length")
        alternatives = tuple(tuple(alts or ()) for alts in top) if request.top_logprobs and top else None
        entropies = None
        if request.entropies and top and len(top) == len(tokens) and all(top):
            # Whether the top-k is raw or scaled (disputed, above) changes only which function of the prefix the
            # cut weights follow, never the chain's target: any function of the answer keeps it on p^alpha.
            entropies = tuple(estimated_entropy([lp for _, lp in alts]) for alts in top)
        return Continuation(tokens, self.detokenize(tokens), tuple(logp), finish,
                            tuple(logq) if logq is not None else None, alternatives,
                            entropies=entropies, entropies_estimated=True)

    async def aclose(self) -> None:
        self.clients, self.outstanding = [], []
